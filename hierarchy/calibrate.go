package hierarchy

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Calibration defaults for zero CalibrateConfig fields.
const (
	// DefaultCentroidCost is the paper's accounting: a centroid is a key row only, a
	// selected key costs its key and value rows.
	DefaultCentroidCost = 0.5
	// DefaultCoarseFactor lets each coarser level keep clusters whose estimated key
	// probability is 8 times below the finest level's threshold.
	DefaultCoarseFactor = 8
)

// CalibrateConfig tunes Calibrate.
type CalibrateConfig struct {
	// Budget is the target of the average of (selected keys + CentroidCost × centroids
	// scored) / keys over the calibration queries, in (0, 1]; 1 selects everything
	// without scoring (all thresholds −Inf).
	Budget float64
	// CentroidCost is the cost of scoring one centroid relative to reading one selected
	// key; 0 means DefaultCentroidCost.
	CentroidCost float64
	// CoarseFactor ≥ 1 sets level l's threshold to the finest level's divided by
	// CoarseFactor^(L−1−l); 0 means DefaultCoarseFactor.
	CoarseFactor float64
	// Threads is the number of goroutines; 0 means GOMAXPROCS. The result does not depend
	// on it.
	Threads int
}

// Calibration is the outcome of Calibrate.
type Calibration struct {
	// LogThresholds holds one log-threshold per level, coarse to fine, for Lookup.
	LogThresholds []float32
	// Fraction is the budget measure achieved on the calibration queries; KeyFraction and
	// CentroidFraction are its two parts (selected keys / keys, centroids scored / keys,
	// the latter before weighting by CentroidCost).
	Fraction, KeyFraction, CentroidFraction float64
	// Evaluations counts the passes over the calibration queries the search made.
	Evaluations int
}

// Thresholds returns the per-level log-thresholds for the finest level's log-threshold
// t: level l gets t − (levels−1−l)·ln(coarseFactor).
func Thresholds(t float64, levels int, coarseFactor float64) []float32 {
	out := make([]float32, levels)
	for l := range out {
		out[l] = float32(t - float64(levels-1-l)*math.Log(coarseFactor))
	}
	return out
}

// Calibrate finds the log-thresholds, shared by all trees (all layers and KV heads of one
// context, all with the same number of levels), at which the calibration queries read
// the requested budget on average: the ratio of Σ (selected keys + CentroidCost ×
// centroids scored) to Σ keys, summed over every tree and every calibration token, each
// token looked up alone (a decode step) with its g query heads. queries[i] holds tree
// i's calibration tokens, token-major: tokens × g × Dim() values (the context's last
// window, post-RoPE; a tree with none does not count).
//
// The finest level's log-threshold t is found by bisection (at most 64 evaluations)
// between a value low enough to select every key and one above every score; the search
// keeps the evaluated t whose fraction is nearest the budget, which is reported. The
// fraction is nearly but not exactly monotone in t (a child level's denominator grows as
// more parents survive), and it cannot go below the cost of scoring the first level.
//
// Errors wrap ErrInvalid or are ctx.Err().
func Calibrate(ctx context.Context, trees []*Tree, queries [][]float32, g int, cfg CalibrateConfig) (*Calibration, error) {
	if len(trees) == 0 || len(queries) != len(trees) || g < 1 {
		return nil, fmt.Errorf("%w: %d trees, %d query sets, %d heads", ErrInvalid, len(trees), len(queries), g)
	}
	if !(cfg.Budget > 0 && cfg.Budget <= 1) {
		return nil, fmt.Errorf("%w: budget %v outside (0, 1]", ErrInvalid, cfg.Budget)
	}
	if cfg.CentroidCost == 0 {
		cfg.CentroidCost = DefaultCentroidCost
	}
	if cfg.CoarseFactor == 0 {
		cfg.CoarseFactor = DefaultCoarseFactor
	}
	if !(cfg.CentroidCost > 0) || math.IsInf(cfg.CentroidCost, 0) || !(cfg.CoarseFactor >= 1) || math.IsInf(cfg.CoarseFactor, 0) {
		return nil, fmt.Errorf("%w: centroid cost %v, coarse factor %v", ErrInvalid, cfg.CentroidCost, cfg.CoarseFactor)
	}
	if cfg.Threads <= 0 {
		cfg.Threads = runtime.GOMAXPROCS(0)
	}
	levels := trees[0].Levels()
	tokens := 0
	for i, t := range trees {
		if t.Levels() != levels {
			return nil, fmt.Errorf("%w: tree %d has %d levels, tree 0 %d", ErrInvalid, i, t.Levels(), levels)
		}
		q := queries[i]
		if len(q)%(g*t.dim) != 0 {
			return nil, fmt.Errorf("%w: tree %d: %d query values are not tokens of %d heads × %d", ErrInvalid, i, len(q), g, t.dim)
		}
		for _, v := range q {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%w: tree %d: non-finite query value", ErrInvalid, i)
			}
		}
		tokens += len(q) / (g * t.dim)
	}
	if tokens == 0 {
		return nil, fmt.Errorf("%w: no calibration queries", ErrInvalid)
	}
	e := &evaluator{trees: trees, queries: queries, g: g, cost: cfg.CentroidCost, threads: cfg.Threads}
	e.per = make([][2]float64, len(trees))
	e.searchers = make([]Searcher, cfg.Threads)

	out := &Calibration{}
	if cfg.Budget >= 1 {
		out.LogThresholds = Thresholds(math.Inf(-1), levels, 1)
		keys, cents := e.eval(out.LogThresholds)
		out.KeyFraction, out.CentroidFraction, out.Fraction = keys, cents, keys+cfg.CentroidCost*cents
		out.Evaluations = 1
		return out, nil
	}

	best := math.Inf(1)
	try := func(t float64) (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		th := Thresholds(t, levels, cfg.CoarseFactor)
		keys, cents := e.eval(th)
		f := keys + cfg.CentroidCost*cents
		out.Evaluations++
		if d := math.Abs(f - cfg.Budget); d < best {
			best = d
			out.LogThresholds, out.Fraction, out.KeyFraction, out.CentroidFraction = th, f, keys, cents
		}
		return f, nil
	}
	// Scores are log-probabilities (≤ 0 for one token), so above hi nothing survives.
	hi := float64(levels-1)*math.Log(cfg.CoarseFactor) + 1
	if f, err := try(hi); err != nil {
		return nil, err
	} else if f >= cfg.Budget {
		return out, nil // the budget is below the cost of the first level: nothing else fits
	}
	lo := -16.0
	for {
		f, err := try(lo)
		if err != nil {
			return nil, err
		}
		if f >= cfg.Budget || lo < -1e30 {
			break
		}
		hi, lo = lo, 4*lo
	}
	for out.Evaluations < 64 && best > 1e-4*cfg.Budget && hi-lo > 1e-7*(1+math.Abs(lo)) {
		mid := lo + (hi-lo)/2
		f, err := try(mid)
		if err != nil {
			return nil, err
		}
		if f > cfg.Budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	return out, nil
}

// evaluator measures the budget fraction of a set of thresholds over all trees.
type evaluator struct {
	trees     []*Tree
	queries   [][]float32
	g         int
	cost      float64
	threads   int
	per       [][2]float64 // per tree: keys selected, centroids scored (summed over tokens)
	searchers []Searcher
}

// eval returns Σ keys selected / Σ keys and Σ centroids scored / Σ keys.
func (e *evaluator) eval(logTau []float32) (keys, cents float64) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
	)
	for w := range e.threads {
		wg.Go(func() {
			s := &e.searchers[w]
			var sel Selection
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(e.trees) {
					return
				}
				t, q := e.trees[i], e.queries[i]
				step := e.g * t.dim
				var k, c float64
				for off := 0; off < len(q); off += step {
					t.Lookup(s, q[off:off+step], e.g, logTau, &sel)
					k += float64(sel.Keys)
					c += float64(sel.Centroids)
				}
				e.per[i] = [2]float64{k, c}
			}
		})
	}
	wg.Wait()
	var total float64
	for i, t := range e.trees {
		keys += e.per[i][0]
		cents += e.per[i][1]
		total += float64(len(e.queries[i]) / (e.g * t.dim) * t.n)
	}
	return keys / total, cents / total
}
