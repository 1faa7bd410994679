package hierarchy

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"squeeze/runtime/index"
	"sync"
)

// Calibration defaults for zero CalibrateConfig fields.
const (
	// DefaultCentroidCost counts a scored centroid like a selected key. By bytes it
	// costs half as much (the lookup reads a half-precision centroid, 2·d bytes, a
	// selected key its f16 key and value, 4·d), as the paper counts it (0.5); but a
	// centroid is scored against every query vector of its KV head and its scores go
	// through the log-sum-exp of its level, so counting it whole keeps the budget an
	// upper bound on the work. Pass CentroidCost 0.5 to reproduce the paper's budgets.
	DefaultCentroidCost = 1
	// DefaultCoarseSlack makes the level above the finest keep 4 times the budget's
	// worth of keys (at budget 0.125 it prunes half the keys, as the paper's
	// hierarchical setting does).
	DefaultCoarseSlack = 4
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
	// CoarseSlack ≥ 1 sets how much the coarser levels keep: level l < L−1 keeps
	// clusters covering min(1, CoarseSlack^(L−1−l) × Budget) of the keys on average
	// (a level that would keep everything gets threshold −Inf and is not scored). 0
	// means DefaultCoarseSlack.
	CoarseSlack float64
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
	// LevelKeyFractions holds, for each level, the fraction of keys under the clusters
	// that survive it (and the levels above); the last entry equals KeyFraction.
	LevelKeyFractions []float64
	// Evaluations counts the passes over the calibration queries the search made.
	Evaluations int
}

// maxSteps bounds the evaluations of one level's search.
const maxSteps = 64

// Calibrate finds the log-thresholds, shared by all trees (all layers and KV heads of one
// context, all with the same number of levels), at which the calibration queries read
// the requested budget on average: the ratio of Σ (selected keys + CentroidCost ×
// centroids scored) to Σ keys, summed over every tree and every calibration token, each
// token looked up alone (a decode step) with its g query heads. queries[i] holds tree
// i's calibration tokens, token-major: tokens × g × Dim() values (the context's last
// window, post-RoPE; a tree with no tokens does not count).
//
// The levels are calibrated top-down, each by bisection on its log-threshold with the
// levels above fixed and those below unscored: each coarser level to its CoarseSlack key
// share, then the finest level to the budget. A search stops at the evaluated threshold
// whose measure is nearest its target (within 1e-4 relative, or after 64 evaluations);
// Fraction reports what was achieved. The measure is nearly but not exactly monotone (a
// child level's denominator grows as more parents survive), and the budget cannot go
// below the cost of scoring the first level.
//
// Errors wrap ErrInvalid or are ctx.Err().
func Calibrate(ctx context.Context, trees []*index.Tree, queries [][]float32, g int, cfg CalibrateConfig) (*Calibration, error) {
	if len(trees) == 0 || len(queries) != len(trees) || g < 1 {
		return nil, fmt.Errorf("%w: %d trees, %d query sets, %d heads", ErrInvalid, len(trees), len(queries), g)
	}
	if !(cfg.Budget > 0 && cfg.Budget <= 1) {
		return nil, fmt.Errorf("%w: budget %v outside (0, 1]", ErrInvalid, cfg.Budget)
	}
	if cfg.CentroidCost == 0 {
		cfg.CentroidCost = DefaultCentroidCost
	}
	if cfg.CoarseSlack == 0 {
		cfg.CoarseSlack = DefaultCoarseSlack
	}
	if !(cfg.CentroidCost > 0) || math.IsInf(cfg.CentroidCost, 0) || !(cfg.CoarseSlack >= 1) || math.IsInf(cfg.CoarseSlack, 0) {
		return nil, fmt.Errorf("%w: centroid cost %v, coarse slack %v", ErrInvalid, cfg.CentroidCost, cfg.CoarseSlack)
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
		if len(q)%(g*t.Dim()) != 0 {
			return nil, fmt.Errorf("%w: tree %d: %d query values are not tokens of %d heads × %d", ErrInvalid, i, len(q), g, t.Dim())
		}
		for _, v := range q {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%w: tree %d: non-finite query value", ErrInvalid, i)
			}
		}
		tokens += len(q) / (g * t.Dim())
	}
	if tokens == 0 {
		return nil, fmt.Errorf("%w: no calibration queries", ErrInvalid)
	}
	e := &evaluator{trees: trees, queries: queries, g: g, threads: cfg.Threads}
	e.per = make([][2]float64, len(trees))
	e.searchers = make([]index.Searcher, cfg.Threads)

	out := &Calibration{LogThresholds: make([]float32, levels), LevelKeyFractions: make([]float64, levels)}
	th := out.LogThresholds
	for l := range th {
		th[l] = float32(math.Inf(-1))
	}
	if cfg.Budget < 1 {
		for l := range levels {
			target := cfg.Budget
			measure := func(keys, cents float64) float64 { return keys + cfg.CentroidCost*cents }
			if l < levels-1 {
				target = math.Min(1, cfg.Budget*math.Pow(cfg.CoarseSlack, float64(levels-1-l)))
				if target >= 1 {
					continue
				}
				measure = func(keys, _ float64) float64 { return keys }
			}
			t, err := e.search(ctx, th, l, target, measure)
			if err != nil {
				return nil, err
			}
			th[l] = float32(t)
			out.Evaluations += e.evals
		}
	}
	// The final measurement, and each level's key share.
	keys, cents := e.eval(th)
	out.Evaluations++
	out.KeyFraction, out.CentroidFraction = keys, cents
	out.Fraction = keys + cfg.CentroidCost*cents
	lower := slices.Clone(th)
	for l := levels - 1; l >= 0; l-- {
		if l == levels-1 {
			out.LevelKeyFractions[l] = keys
			continue
		}
		lower[l+1] = float32(math.Inf(-1))
		out.LevelKeyFractions[l], _ = e.eval(lower)
	}
	return out, nil
}

// search bisects on level l's log-threshold, with th's other entries fixed, for the value
// whose measure is nearest target; it reports the evaluations in e.evals.
func (e *evaluator) search(ctx context.Context, th []float32, l int, target float64, measure func(keys, cents float64) float64) (float64, error) {
	e.evals = 0
	bestT, bestD := 0.0, math.Inf(1)
	try := func(t float64) (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		th[l] = float32(t)
		f := measure(e.eval(th))
		e.evals++
		if d := math.Abs(f - target); d < bestD {
			bestT, bestD = t, d
		}
		return f, nil
	}
	// A score is a log-probability (≤ 0 for one token): above 1 nothing survives.
	hi := 1.0
	if f, err := try(hi); err != nil || f >= target {
		return bestT, err // an error, or a target below the cost of scoring alone
	}
	lo := -16.0
	for {
		f, err := try(lo)
		if err != nil {
			return 0, err
		}
		if f >= target || lo < -1e30 {
			break
		}
		hi, lo = lo, 4*lo
	}
	for e.evals < maxSteps && bestD > 1e-4*target && hi-lo > 1e-7*(1+math.Abs(lo)) {
		mid := lo + (hi-lo)/2
		f, err := try(mid)
		if err != nil {
			return 0, err
		}
		if f > target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return bestT, nil
}

// evaluator measures the budget fraction of a set of thresholds over all trees.
type evaluator struct {
	trees     []*index.Tree
	queries   [][]float32
	g         int
	threads   int
	evals     int
	per       [][2]float64 // per tree: keys selected, centroids scored (summed over tokens)
	searchers []index.Searcher
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
			var sel index.Selection
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(e.trees) {
					return
				}
				t, q := e.trees[i], e.queries[i]
				step := e.g * t.Dim()
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
		total += float64(len(e.queries[i]) / (e.g * t.Dim()) * t.Len())
	}
	return keys / total, cents / total
}
