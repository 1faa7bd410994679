package precompute

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"squeeze/calibrate"
	"squeeze/format"
	"squeeze/hierarchy"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/gguf"
	"squeeze/runtime/index"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// Defaults of SqueezeOptions' zero fields.
const (
	DefaultBudget = 0.25
	DefaultWindow = 64
	DefaultSink   = 1
	DefaultBatch  = 512
)

// DefaultBudgets is the ladder of budgets calibrated besides the requested one.
var DefaultBudgets = []float64{1.0 / 16, 1.0 / 8, 1.0 / 4, 0.325, 1.0 / 2}

// ErrInvalid means bad options or inputs to Squeeze.
var ErrInvalid = errors.New("precompute: invalid input")

// Stage names a step of the pipeline, for Progress.
type Stage string

// The pipeline's stages, in order.
const (
	StageRead      Stage = "read"
	StageTokenize  Stage = "tokenize"
	StagePrefill   Stage = "prefill"
	StageCluster   Stage = "cluster"
	StageCalibrate Stage = "calibrate"
	StageWrite     Stage = "write"
)

// Progress reports how far a stage is. Done and Total count tokens for StagePrefill,
// trees for StageCluster, budgets for StageCalibrate, and are 0 for the other stages.
type Progress struct {
	Stage       Stage
	Done, Total int
	// TokensPerSecond is the prefill rate so far (StagePrefill only).
	TokensPerSecond float64
	// Elapsed is the time since the stage started.
	Elapsed time.Duration
}

// SqueezeOptions tune Squeeze. The zero value takes every default.
type SqueezeOptions struct {
	// Fractions are the tree levels' clusters as fractions of the keys, coarse to fine
	// (nil: hierarchy.DefaultFractions).
	Fractions []float64
	// Seed seeds the k-means of every tree (each (layer, KV head) derives its own).
	Seed uint64
	// Sink is the number of first tokens always attended (0: DefaultSink; -1: none).
	// Window is the number of last tokens always attended, whose queries calibrate the
	// thresholds (0: DefaultWindow). A context too short for both gets a smaller window.
	Sink, Window int
	// Budget is the requested budget (0: DefaultBudget); Budgets the ladder calibrated
	// beside it (nil: DefaultBudgets). Budgets of 1 or more are not calibrated (they read
	// everything).
	Budget  float64
	Budgets []float64
	// CentroidCost is the cost of a scored centroid in the budget measure (0:
	// hierarchy.DefaultCentroidCost).
	CentroidCost float64
	// Batch is the number of tokens per forward pass (0: DefaultBatch).
	Batch int
	// Cache is the prefill's KV cache type (the zero value is model.CacheF32).
	Cache model.CacheType
	// KV chooses how the keys and values are stored (the zero value: f16).
	KV KVOptions
	// KeepPreRoPE keeps every position's keys before RoPE in Squeezed.PreRoPE, for
	// Quantize to quantize the context afterwards in several ways.
	KeepPreRoPE bool
	// Predictor tunes the fit of SPEED's early-exit predictor on the context's hidden
	// states (calibrate.PredictorFit); NoPredictor skips it. A context too short to fit
	// one gets none.
	Predictor   calibrate.PredictorOptions
	NoPredictor bool
	// Progress, if set, is called as the stages advance, from the calling goroutine.
	Progress func(Progress)
}

// withDefaults fills the zero fields.
func (o SqueezeOptions) withDefaults() SqueezeOptions {
	if o.Fractions == nil {
		o.Fractions = hierarchy.DefaultFractions
	}
	if o.Sink == 0 {
		o.Sink = DefaultSink
	} else if o.Sink < 0 {
		o.Sink = 0
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Budget == 0 {
		o.Budget = DefaultBudget
	}
	if o.Budgets == nil {
		o.Budgets = DefaultBudgets
	}
	if o.CentroidCost == 0 {
		o.CentroidCost = hierarchy.DefaultCentroidCost
	}
	if o.Batch == 0 {
		o.Batch = DefaultBatch
	}
	return o
}

// Squeezed is what Squeeze computed.
type Squeezed struct {
	// Context is the squeezed context.
	Context *sparse.Context
	// Calibration holds what the calibration measured for each of Context.Thresholds.
	Calibration []format.CalibrationStats
	// Sink and Window are the always-attended first and last tokens actually used.
	Sink, Window int
	// Budget is the requested budget.
	Budget float64
	// KV describes the quantized rows (nil for f16).
	KV *format.KVInfo
	// PreRoPE holds, with SqueezeOptions.KeepPreRoPE, the keys before RoPE of every
	// position per (layer, KV head), layer-major: tokens × HeadDim half floats each.
	PreRoPE [][]uint16
	// Queries holds the queries of the context's last window (after RoPE) per (layer,
	// KV head), layer-major: window tokens × the KV head's query heads × HeadDim,
	// token-major (Quantize's RoundingDots reads them).
	Queries [][]float32
	// Predictor is the early-exit predictor fitted on the context (nil when skipped).
	Predictor *earlyexit.Predictor
	// Prefill, Cluster, Quantize and Calibrate are the stages' durations; Predict is
	// the predictor's fit after the prefill.
	Prefill, Cluster, Quantize, Calibrate, Predict time.Duration
}

// Squeeze computes the squeezed state of a fixed context: it prefills tokens through m
// (whose GGUF file is f, for the query projections of the calibration window), builds a
// centroid tree per (layer, KV head) over the post-RoPE keys of every position except the
// sink and the last window, stores keys and values in the trees' order as f16, and
// calibrates thresholds for the budgets. The result depends only on the model, the
// tokens and the options (not on the pool's thread count). It returns ctx's error if ctx
// is cancelled.
func Squeeze(ctx context.Context, m *model.Model, f *gguf.File, pool *kernels.Pool, tokens []int32, o SqueezeOptions) (*Squeezed, error) {
	o = o.withDefaults()
	cfg := &m.Config
	n := len(tokens)
	switch {
	case pool == nil:
		return nil, fmt.Errorf("%w: no pool", ErrInvalid)
	case o.Budget <= 0 || o.Budget > 1:
		return nil, fmt.Errorf("%w: budget %v, want (0, 1]", ErrInvalid, o.Budget)
	case o.Window < 1:
		return nil, fmt.Errorf("%w: window %d", ErrInvalid, o.Window)
	case o.Batch < 1:
		return nil, fmt.Errorf("%w: batch %d", ErrInvalid, o.Batch)
	case n < o.Sink+2:
		return nil, fmt.Errorf("%w: a context of %d tokens is too short to squeeze (at least %d)", ErrInvalid, n, o.Sink+2)
	}
	for _, b := range o.Budgets {
		if !(b > 0) {
			return nil, fmt.Errorf("%w: budget %v in the ladder", ErrInvalid, b)
		}
	}
	if err := o.KV.check(); err != nil {
		return nil, err
	}
	var kvIn kvInput
	if (o.KV.quantized() && !o.KV.PostRoPE) || o.KeepPreRoPE {
		if o.KV.quantized() && !o.KV.PostRoPE {
			var err error
			if kvIn.rope, kvIn.freq, err = ropeTable(m, f, n); err != nil {
				return nil, err
			}
		}
		kvIn.pre = make([][]uint16, cfg.Layers*cfg.KVHeads)
		for i := range kvIn.pre {
			kvIn.pre[i] = make([]uint16, n*cfg.HeadDim)
		}
	}
	if o.KV.quantized() && o.KV.Rounding == RoundingDots {
		var err error
		if kvIn.outputs, err = outputProjections(m, f); err != nil {
			return nil, err
		}
	}
	sink, window := o.Sink, min(o.Window, (n-o.Sink)/2)
	proj, err := newQueryProjection(m, f)
	if err != nil {
		return nil, err
	}
	report := func(p Progress) {
		if o.Progress != nil {
			o.Progress(p)
		}
	}

	// Prefill, keeping each (layer, KV head)'s keys and values as f16 rows and the layer
	// inputs of the window.
	d, kvh, dim := cfg.HeadDim, cfg.KVHeads, cfg.Dim
	keys := make([][]uint16, cfg.Layers*kvh)
	vals := make([][]uint16, cfg.Layers*kvh)
	for i := range keys {
		keys[i] = make([]uint16, n*d)
		vals[i] = make([]uint16, n*d)
	}
	winStart := n - window
	winInput := make([][]float32, cfg.Layers)
	for l := range winInput {
		winInput[l] = make([]float32, window*dim)
	}
	var fit *calibrate.PredictorFit
	if !o.NoPredictor {
		f, err := calibrate.NewPredictorFit(cfg, pool, n, o.Predictor)
		switch {
		case err == nil:
			fit = f
		case !errors.Is(err, calibrate.ErrInvalid) || o.Predictor.Window != 0 || o.Predictor.Layers != nil || o.Predictor.Ridges != nil:
			return nil, fmt.Errorf("precompute: predictor: %w", err)
		}
	}
	observe := func(s *model.LayerState) {
		if fit != nil {
			fit.Observe(s)
		}
		kv := cfg.KVDim()
		for t := range s.Tokens {
			p := s.Pos + t
			for h := range kvh {
				i := s.Layer*kvh + h
				kernels.F32ToF16Slice(keys[i][p*d:(p+1)*d], s.Keys[t*kv+h*d:t*kv+(h+1)*d])
				kernels.F32ToF16Slice(vals[i][p*d:(p+1)*d], s.Values[t*kv+h*d:t*kv+(h+1)*d])
				if kvIn.pre != nil {
					kernels.F32ToF16Slice(kvIn.pre[i][p*d:(p+1)*d], s.KeysPreRoPE[t*kv+h*d:t*kv+(h+1)*d])
				}
			}
			if p >= winStart {
				copy(winInput[s.Layer][(p-winStart)*dim:(p-winStart+1)*dim], s.Input[t*dim:(t+1)*dim])
			}
		}
	}
	cache, err := m.NewCache(n, o.Cache)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	opts := &model.Options{Observe: observe}
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(done+o.Batch, n)
		if err := m.Forward(pool, cache, tokens[done:end], nil, opts); err != nil {
			return nil, fmt.Errorf("precompute: prefill at token %d: %w", done, err)
		}
		done = end
		el := time.Since(start)
		report(Progress{Stage: StagePrefill, Done: done, Total: n, TokensPerSecond: float64(done) / el.Seconds(), Elapsed: el})
	}
	cache = nil
	out := &Squeezed{Sink: sink, Window: window, Budget: o.Budget, Prefill: time.Since(start)}
	if fit != nil {
		start = time.Now()
		if out.Predictor, err = fit.Fit(ctx, m); err != nil {
			return nil, fmt.Errorf("precompute: predictor: %w", err)
		}
		out.Predict = time.Since(start)
	}

	// Queries of the window, post-RoPE: Layers x window x QDim.
	queries := make([][]float32, cfg.Layers)
	for l := range queries {
		queries[l] = proj.queries(pool, l, winInput[l], window, winStart)
	}

	// One tree per (layer, KV head), built in parallel.
	start = time.Now()
	c := &sparse.Context{Tokens: slices.Clone(tokens), Layers: make([][]sparse.Head, cfg.Layers)}
	for l := range c.Layers {
		c.Layers[l] = make([]sparse.Head, kvh)
	}
	always := make([]int32, 0, sink+window)
	for p := range sink {
		always = append(always, int32(p))
	}
	for p := winStart; p < n; p++ {
		always = append(always, int32(p))
	}
	positions := make([]int32, winStart-sink)
	for i := range positions {
		positions[i] = int32(sink + i)
	}
	trees := make([]*index.Tree, cfg.Layers*kvh)
	var doneTrees int
	var mu sync.Mutex
	err = parallel(ctx, len(trees), func(i int) error {
		l, h := i/kvh, i%kvh
		k16 := keys[i][sink*d : winStart*d]
		k32 := make([]float32, len(k16))
		kernels.F16ToF32Slice(k32, k16)
		tree, err := hierarchy.Build(ctx, k32, d, positions, hierarchy.Config{
			Fractions: o.Fractions,
			Seed:      o.Seed + uint64(i)*0x9e3779b97f4a7c15,
			Threads:   1,
		})
		if err != nil {
			return fmt.Errorf("precompute: layer %d KV head %d: %w", l, h, err)
		}
		trees[i] = tree
		hd := &c.Layers[l][h]
		hd.Tree = tree
		hd.Keys = &sparse.F16Rows{Dim: d, Data: gather(keys[i], d, tree.Order())}
		hd.Values = &sparse.F16Rows{Dim: d, Data: gather(vals[i], d, tree.Order())}
		hd.Always = slices.Clone(always)
		hd.AlwaysK = &sparse.F16Rows{Dim: d, Data: gather(keys[i], d, always)}
		hd.AlwaysV = &sparse.F16Rows{Dim: d, Data: gather(vals[i], d, always)}
		keys[i], vals[i] = nil, nil
		mu.Lock()
		doneTrees++
		mu.Unlock()
		return nil
	}, func() {
		mu.Lock()
		p := Progress{Stage: StageCluster, Done: doneTrees, Total: len(trees), Elapsed: time.Since(start)}
		mu.Unlock()
		report(p)
	})
	if err != nil {
		return nil, err
	}
	out.Cluster = time.Since(start)
	// Calibration queries per tree: window tokens x G heads x d, token-major.
	g, qd := cfg.Heads/kvh, cfg.QDim()
	calib := make([][]float32, len(trees))
	for i := range calib {
		l, h := i/kvh, i%kvh
		q := make([]float32, 0, window*g*d)
		for t := range window {
			row := queries[l][t*qd : (t+1)*qd]
			q = append(q, row[h*g*d:(h+1)*g*d]...)
		}
		calib[i] = q
	}
	kvIn.queries = calib
	if o.KV.quantized() {
		start = time.Now()
		if out.KV, err = quantizeKV(ctx, c, m, pool, &kvIn, sink, o.KV, report); err != nil {
			return nil, err
		}
		out.Quantize = time.Since(start)
	}
	out.Queries = calib
	if o.KeepPreRoPE {
		out.PreRoPE = kvIn.pre
	}
	kvIn = kvInput{}

	start = time.Now()
	budgets := calibrationBudgets(o.Budget, o.Budgets)
	for bi, b := range budgets {
		report(Progress{Stage: StageCalibrate, Done: bi, Total: len(budgets), Elapsed: time.Since(start)})
		cal, err := hierarchy.Calibrate(ctx, trees, calib, g, hierarchy.CalibrateConfig{
			Budget:       b,
			CentroidCost: o.CentroidCost,
			Threads:      pool.Threads(),
		})
		if err != nil {
			return nil, fmt.Errorf("precompute: calibrate budget %g: %w", b, err)
		}
		c.Thresholds = append(c.Thresholds, sparse.Threshold{Budget: b, Fraction: cal.Fraction, LogTau: cal.LogThresholds})
		out.Calibration = append(out.Calibration, format.CalibrationStats{
			KeyFraction:       cal.KeyFraction,
			CentroidFraction:  cal.CentroidFraction,
			LevelKeyFractions: cal.LevelKeyFractions,
		})
	}
	report(Progress{Stage: StageCalibrate, Done: len(budgets), Total: len(budgets), Elapsed: time.Since(start)})
	out.Calibrate = time.Since(start)
	out.Context = c
	return out, nil
}

// calibrationBudgets returns the ladder and the requested budget, below 1, ascending,
// without duplicates.
func calibrationBudgets(budget float64, ladder []float64) []float64 {
	var bs []float64
	for _, b := range append(slices.Clone(ladder), budget) {
		if b < 1 {
			bs = append(bs, b)
		}
	}
	slices.Sort(bs)
	return slices.Compact(bs)
}

// gather returns the rows of src (d values each) at the given indices, in that order.
func gather(src []uint16, d int, at []int32) []uint16 {
	dst := make([]uint16, len(at)*d)
	for i, p := range at {
		copy(dst[i*d:(i+1)*d], src[int(p)*d:(int(p)+1)*d])
	}
	return dst
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines, calling tick from the calling
// goroutine after each completion. The first error cancels the rest and is returned.
func parallel(ctx context.Context, n int, fn func(i int) error, tick func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	results := make(chan error)
	workers := min(n, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				err := ctx.Err()
				if err == nil {
					err = fn(i)
				}
				results <- err
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range n {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var first error
	received := 0
	go func() {
		wg.Wait()
		close(results)
	}()
	for err := range results {
		received++
		if err != nil && first == nil {
			first = err
			cancel()
		}
		if err == nil && tick != nil {
			tick()
		}
	}
	if first == nil && received < n {
		first = ctx.Err()
	}
	return first
}
