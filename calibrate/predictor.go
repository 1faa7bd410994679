package calibrate

import (
	"context"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"

	"squeeze/runtime/earlyexit"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// Defaults of PredictorOptions.
const (
	// DefaultPredictorWindow is the number of last context tokens held out to measure
	// acceptance (at most a quarter of the context).
	DefaultPredictorWindow = 128
	// DefaultPredictorRank is the rank of the map on models wider than
	// MaxFullRankDim.
	DefaultPredictorRank = 256
	// MaxFullRankDim is the widest model whose map is fitted at full rank by default.
	MaxFullRankDim = 1024
	// MaxPredictorCandidates is how many exit depths are tried by default: every one on
	// shallow models, that many spread over the depth on deeper ones.
	MaxPredictorCandidates = 9
)

// DefaultRidges are the ridge strengths tried by default, relative to the mean variance
// of the early hidden state.
var DefaultRidges = []float64{1e-2, 1e-1}

// PredictorOptions tune a PredictorFit. The zero value takes every default.
type PredictorOptions struct {
	// Layers are the candidate exit depths E (each in 1..Layers-1: the number of layers
	// a draft runs); nil takes every depth, or MaxPredictorCandidates spread over it.
	Layers []int
	// Rank is the rank of the map: 0 is full rank up to MaxFullRankDim and
	// DefaultPredictorRank above it; a negative rank fits only the bias (the raw exit
	// shifted).
	Rank int
	// Ridges are the candidate ridge strengths λ, each relative to the mean diagonal of
	// the centered Gram matrix of the early hidden states (nil: DefaultRidges). Every
	// (depth, λ) is scored and the best λ kept per depth.
	Ridges []float64
	// Window is the number of last context tokens whose acceptance scores the fits
	// (0: DefaultPredictorWindow). They are not fitted on.
	Window int
}

// PredictorFit fits the early-exit predictor of earlyexit on a context's own hidden
// states: a ridge regression, per candidate depth E, from the hidden state after E
// layers to the residual the remaining layers add to it (the final hidden state before
// the final norm, minus the early one). It collects the normal equations during the
// context's prefill (pass Observe as model.Options.Observe, or call it from one) and
// keeps the last Window tokens' states apart; Fit solves them and picks the depth whose
// drafts, scored on those held-out tokens by their agreement with the model's own greedy
// next token, promise the best speed-up (earlyexit.Speedup).
//
// The statistics are accumulated in float32 products per pass (kernels.MatMul) and summed
// in float64, on hidden states shifted by the first pass's mean so that the centering
// loses nothing.
type PredictorFit struct {
	cfg    model.Config
	pool   *kernels.Pool
	tokens int // context length
	window int
	layers []int // candidate depths, ascending
	rank   int
	ridges []float64

	// Per candidate c: the shifts, sums and products of x (the early state) and r (the
	// residual), over the fitted rows.
	shiftX, shiftR [][]float32
	sumX, sumR     [][]float64
	gram, cross    [][]float64 // Dim x Dim: Σ x xᵀ; Σ r xᵀ (row i: output i)
	count          int
	started        bool

	pass     [][]float32 // the current pass's early states per candidate
	winX     [][]float32 // held-out early states per candidate: window x Dim
	winFinal []float32   // held-out final states
	xt, rt   []float32   // transposed batches for the products
	prod     []float32
	fitFrom  int   // first position fitted (the attention sink's BOS is left out)
	err      error // the first failure of Observe, returned by Fit
}

// NewPredictorFit prepares a fit over a context of tokens tokens on a model of shape cfg;
// the pool runs its matrix products.
func NewPredictorFit(cfg *model.Config, pool *kernels.Pool, tokens int, o PredictorOptions) (*PredictorFit, error) {
	if cfg.Layers < 2 {
		return nil, fmt.Errorf("%w: a model of %d layer has no early exit", ErrInvalid, cfg.Layers)
	}
	window := o.Window
	if window == 0 {
		window = min(DefaultPredictorWindow, tokens/4)
	}
	const minFit = 16
	if window < 1 || tokens-window-1 < minFit {
		return nil, fmt.Errorf("%w: a context of %d tokens is too short to fit a predictor with a window of %d (at least %d fitted tokens)", ErrInvalid, tokens, window, minFit)
	}
	layers := slices.Clone(o.Layers)
	if layers == nil {
		n := min(cfg.Layers-1, MaxPredictorCandidates)
		for i := range n {
			layers = append(layers, 1+i*(cfg.Layers-2)/max(1, n-1))
		}
	}
	slices.Sort(layers)
	layers = slices.Compact(layers)
	for _, e := range layers {
		if e < 1 || e >= cfg.Layers {
			return nil, fmt.Errorf("%w: exit depth %d of a %d-layer model", ErrInvalid, e, cfg.Layers)
		}
	}
	rank := o.Rank
	switch {
	case rank == 0 && cfg.Dim <= MaxFullRankDim:
		rank = cfg.Dim
	case rank == 0:
		rank = DefaultPredictorRank
	case rank < 0:
		rank = 0
	}
	rank = min(rank, cfg.Dim)
	ridges := o.Ridges
	if ridges == nil {
		ridges = DefaultRidges
	}
	for _, l := range ridges {
		if !(l > 0) || math.IsInf(l, 0) {
			return nil, fmt.Errorf("%w: ridge %v", ErrInvalid, l)
		}
	}
	d, nc := cfg.Dim, len(layers)
	f := &PredictorFit{
		cfg: *cfg, pool: pool, tokens: tokens, window: window, layers: layers, rank: rank,
		ridges: slices.Clone(ridges), fitFrom: 1,
		winFinal: make([]float32, window*d),
	}
	for range nc {
		f.shiftX = append(f.shiftX, make([]float32, d))
		f.shiftR = append(f.shiftR, make([]float32, d))
		f.sumX = append(f.sumX, make([]float64, d))
		f.sumR = append(f.sumR, make([]float64, d))
		f.gram = append(f.gram, make([]float64, d*d))
		f.cross = append(f.cross, make([]float64, d*d))
		f.pass = append(f.pass, nil)
		f.winX = append(f.winX, make([]float32, window*d))
	}
	return f, nil
}

// Layers returns the candidate exit depths.
func (f *PredictorFit) Layers() []int { return slices.Clone(f.layers) }

// Observe takes one layer's state of the context's prefill. The passes must cover the
// context's positions 0..tokens-1 with every layer observed in order, as
// model.Forward's Observe delivers them.
func (f *PredictorFit) Observe(s *model.LayerState) {
	if f.err != nil {
		return
	}
	d := f.cfg.Dim
	n := s.Tokens
	for c, e := range f.layers {
		if s.Layer == e-1 {
			f.pass[c] = append(f.pass[c][:0], s.Hidden[:n*d]...)
		}
	}
	if s.Layer != f.cfg.Layers-1 {
		return
	}
	winStart := f.tokens - f.window
	// Held-out rows.
	for t := range n {
		p := s.Pos + t
		if p < winStart || p >= f.tokens {
			continue
		}
		w := p - winStart
		copy(f.winFinal[w*d:(w+1)*d], s.Hidden[t*d:(t+1)*d])
		for c := range f.layers {
			copy(f.winX[c][w*d:(w+1)*d], f.pass[c][t*d:(t+1)*d])
		}
	}
	// Fitted rows: positions [fitFrom, winStart).
	lo := max(0, f.fitFrom-s.Pos)
	hi := min(n, winStart-s.Pos)
	if hi <= lo {
		return
	}
	m := hi - lo
	if !f.started {
		// Shift by the first rows' means.
		for c := range f.layers {
			meanRows(f.shiftX[c], f.pass[c][lo*d:hi*d], d)
			meanRows(f.shiftR[c], f.residual(c, s.Hidden, lo, hi), d)
		}
		f.started = true
	}
	f.count += m
	if len(f.xt) < m*d {
		f.xt = make([]float32, m*d)
		f.rt = make([]float32, m*d)
	}
	f.prod = slices.Grow(f.prod[:0], d*d)[:d*d]
	final := s.Hidden[lo*d : hi*d]
	for c := range f.layers {
		// Shifted and transposed: xt[j*m+t] = x_t[j] - shiftX[j], rt likewise for the
		// residual r_t = final_t - x_t.
		x := f.pass[c][lo*d : hi*d]
		xt, rt := f.xt[:m*d], f.rt[:m*d]
		for t := range m {
			for j := range d {
				xv := x[t*d+j]
				a, b := xv-f.shiftX[c][j], final[t*d+j]-xv-f.shiftR[c][j]
				xt[j*m+t], rt[j*m+t] = a, b
				f.sumX[c][j] += float64(a)
				f.sumR[c][j] += float64(b)
			}
		}
		data, err := kernels.Quantize(gguf.TypeF32, xt)
		var xm *kernels.Matrix
		if err == nil {
			xm, err = kernels.NewMatrix(gguf.TypeF32, d, m, data)
		}
		if err != nil {
			f.err = fmt.Errorf("calibrate: predictor statistics: %w", err)
			return
		}
		// gram[i*d+j] += Σ_t x_j x_i; cross[i*d+j] += Σ_t r_i x_j.
		kernels.MatMul(f.pool, f.prod, xm, xt, d)
		addTo(f.gram[c], f.prod)
		kernels.MatMul(f.pool, f.prod, xm, rt, d)
		addTo(f.cross[c], f.prod)
	}
}

// residual returns rows lo..hi of final minus candidate c's early state, row-major.
func (f *PredictorFit) residual(c int, final []float32, lo, hi int) []float32 {
	d := f.cfg.Dim
	dst := make([]float32, (hi-lo)*d)
	x := f.pass[c][lo*d : hi*d]
	for i := range dst {
		dst[i] = final[lo*d+i] - x[i]
	}
	return dst
}

// Fit solves the regressions, scores every candidate depth and ridge on the held-out
// tokens through m's final norm and LM head, and returns the predictor of the depth with
// the best modeled speed-up; its Scores hold every depth's acceptance (with the best
// ridge) and the raw exit's. It returns ctx's error if cancelled.
func (f *PredictorFit) Fit(ctx context.Context, m *model.Model) (*earlyexit.Predictor, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.count == 0 {
		return nil, fmt.Errorf("%w: no hidden states observed", ErrInvalid)
	}
	d, w := f.cfg.Dim, f.window
	// The model's own greedy tokens after the held-out positions.
	target := f.greedy(m, slices.Clone(f.winFinal))
	var best *earlyexit.Predictor
	bestSpeed := math.Inf(-1)
	var scores []earlyexit.Score
	pred := make([]float32, w*d)
	for c, e := range f.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		raw := agreement(f.greedy(m, slices.Clone(f.winX[c])), target)
		var top *earlyexit.Predictor
		topAcc := -1.0
		for _, lambda := range f.ridges {
			p, err := f.solve(c, e, lambda)
			if err != nil {
				return nil, err
			}
			if err := p.Check(&f.cfg); err != nil {
				return nil, fmt.Errorf("calibrate: predictor at depth %d: %w", e, err)
			}
			// The artifact stores the map in half floats: score it as it will be read.
			for _, m := range [][]float32{p.Full, p.A, p.B} {
				h := make([]uint16, len(m))
				kernels.F32ToF16Slice(h, m)
				kernels.F16ToF32Slice(m, h)
			}
			tmp := make([]float32, p.Rank)
			for t := range w {
				p.Apply(f.pool, pred[t*d:(t+1)*d], f.winX[c][t*d:(t+1)*d], tmp)
			}
			if acc := agreement(f.greedy(m, pred), target); acc > topAcc {
				top, topAcc = p, acc
			}
		}
		scores = append(scores, earlyexit.Score{Layer: e, Acceptance: topAcc, Raw: raw})
		if s, _ := earlyexit.Speedup(&f.cfg, e, topAcc); s > bestSpeed {
			best, bestSpeed = top, s
		}
	}
	best.Scores = scores
	return best, nil
}

// greedy returns the argmax token of the LM head over each of the rows of hidden (which
// it overwrites).
func (f *PredictorFit) greedy(m *model.Model, hidden []float32) []int32 {
	d, v := f.cfg.Dim, f.cfg.Vocab
	n := len(hidden) / d
	logits := make([]float32, n*v)
	m.Head(f.pool, hidden, n, logits)
	out := make([]int32, n)
	for i := range n {
		row := logits[i*v : (i+1)*v]
		best := 0
		for j, x := range row {
			if x > row[best] {
				best = j
			}
		}
		out[i] = int32(best)
	}
	return out
}

// agreement is the fraction of equal entries.
func agreement(a, b []int32) float64 {
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	return float64(same) / float64(len(a))
}

// solve fits candidate c's map with ridge lambda (relative to the mean variance):
// W = (G + λ' I)⁻¹ C, with G and C the centered Gram and cross products, then reduces it
// to the predictor's rank (reduced-rank regression: projected onto the top singular
// directions of the fitted residuals).
func (f *PredictorFit) solve(c, e int, lambda float64) (*earlyexit.Predictor, error) {
	d := f.cfg.Dim
	n := float64(f.count)
	mx, mr := make([]float64, d), make([]float64, d)
	for j := range d {
		mx[j] = f.sumX[c][j] / n
		mr[j] = f.sumR[c][j] / n
	}
	p := &earlyexit.Predictor{Layer: e, Dim: d, Rank: f.rank, Bias: make([]float32, d)}
	if f.rank == 0 {
		for j := range d {
			p.Bias[j] = float32(mr[j] + float64(f.shiftR[c][j]))
		}
		return p, nil
	}
	g := mat.NewSymDense(d, nil)
	var trace float64
	for i := range d {
		for j := i; j < d; j++ {
			v := f.gram[c][i*d+j] - n*mx[i]*mx[j]
			g.SetSym(i, j, v)
		}
		trace += g.At(i, i)
	}
	reg := lambda * math.Max(trace/float64(d), 1e-12)
	for i := range d {
		g.SetSym(i, i, g.At(i, i)+reg)
	}
	// rhs[j][i] = Σ (x_j - mx_j)(r_i - mr_i): inputs by outputs.
	rhs := mat.NewDense(d, d, nil)
	for i := range d {
		for j := range d {
			rhs.Set(j, i, f.cross[c][i*d+j]-n*mr[i]*mx[j])
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(g) {
		return nil, fmt.Errorf("calibrate: the regularized Gram matrix at depth %d is not positive definite", e)
	}
	var wm mat.Dense // inputs x outputs
	if err := ch.SolveTo(&wm, rhs); err != nil {
		return nil, fmt.Errorf("calibrate: ridge solve at depth %d: %w", e, err)
	}
	// The map acts on unshifted states: pred = x + (mr + shiftR) + Wᵀ(x - shiftX - mx).
	off := make([]float64, d)
	for j := range d {
		off[j] = float64(f.shiftX[c][j]) + mx[j]
	}
	if f.rank < d {
		// Top directions of the fitted residuals' covariance Wᵀ G W.
		var gw, s mat.Dense
		gw.Mul(g, &wm)
		s.Mul(wm.T(), &gw)
		sym := mat.NewSymDense(d, nil)
		for i := range d {
			for j := i; j < d; j++ {
				sym.SetSym(i, j, (s.At(i, j)+s.At(j, i))/2)
			}
		}
		var eig mat.EigenSym
		if !eig.Factorize(sym, true) {
			return nil, fmt.Errorf("calibrate: eigen-decomposition at depth %d failed", e)
		}
		var vecs mat.Dense
		eig.VectorsTo(&vecs) // ascending eigenvalues: the top ones are the last columns
		vr := vecs.Slice(0, d, d-f.rank, d)
		var a mat.Dense // inputs x rank: W V_r
		a.Mul(&wm, vr)
		p.A, p.B = make([]float32, f.rank*d), make([]float32, d*f.rank)
		for k := range f.rank {
			for j := range d {
				p.A[k*d+j] = float32(a.At(j, k))
			}
		}
		for i := range d {
			for k := range f.rank {
				p.B[i*f.rank+k] = float32(vr.At(i, k))
			}
		}
		// Bias: mr + shiftR - B A off.
		for i := range d {
			var v float64
			for k := range f.rank {
				var ak float64
				for j := range d {
					ak += a.At(j, k) * off[j]
				}
				v += vr.At(i, k) * ak
			}
			p.Bias[i] = float32(mr[i] + float64(f.shiftR[c][i]) - v)
		}
		return p, nil
	}
	p.Full = make([]float32, d*d)
	for i := range d {
		var v float64
		for j := range d {
			wij := wm.At(j, i)
			p.Full[i*d+j] = float32(wij)
			v += wij * off[j]
		}
		p.Bias[i] = float32(mr[i] + float64(f.shiftR[c][i]) - v)
	}
	return p, nil
}

// meanRows writes the mean of the d-long rows of x into dst.
func meanRows(dst, x []float32, d int) {
	n := len(x) / d
	for j := range d {
		var s float64
		for t := range n {
			s += float64(x[t*d+j])
		}
		dst[j] = float32(s / float64(n))
	}
}

// addTo adds src to dst element-wise.
func addTo(dst []float64, src []float32) {
	for i, v := range src {
		dst[i] += float64(v)
	}
}
