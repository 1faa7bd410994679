package index

import (
	"math"

	"squeeze/runtime/kernels"
)

// Span is a range [Start, End) of storage indices.
type Span struct{ Start, End int32 }

// Selection is the result of a lookup. Its slices are reused from call to call: a lookup
// truncates and appends, allocating only when they must grow, and the caller may keep the
// capacity by passing the same Selection again.
type Selection struct {
	// Clusters lists the selected (non-empty) leaf clusters in ascending order.
	Clusters []int32
	// Spans lists their keys as storage index ranges, ascending, adjacent spans merged.
	Spans []Span
	// Keys is the number of keys selected.
	Keys int
	// Centroids is the number of centroids scored.
	Centroids int
}

func (sel *Selection) reset() {
	sel.Clusters, sel.Spans = sel.Clusters[:0], sel.Spans[:0]
	sel.Keys, sel.Centroids = 0, 0
}

// add appends leaf cluster j (keys [lo, hi)) unless it is empty.
func (sel *Selection) add(j, lo, hi int32) {
	if lo == hi {
		return
	}
	sel.Clusters = append(sel.Clusters, j)
	sel.Keys += int(hi - lo)
	if k := len(sel.Spans) - 1; k >= 0 && sel.Spans[k].End == lo {
		sel.Spans[k].End = hi
		return
	}
	sel.Spans = append(sel.Spans, Span{lo, hi})
}

// Searcher holds a lookup's scratch space. The zero value is ready; its buffers grow to
// the largest lookup seen and are then reused, so lookups do not allocate. A Searcher may
// serve any tree but only one lookup at a time.
type Searcher struct {
	a, b []int32
	// runs cuts the candidates a into runs of consecutive clusters, built with them
	// (survive's runs).
	runs               []int32
	logits, x, lc, thr []float32
	logZ               []float64
	// A prefill block's per head and candidate largest score over its tokens, and sum
	// of the scores' exponentials relative to it (selectTokens).
	top, sum []float64
	empty    []int32 // the current level's candidates of empty clusters
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n, n+n/4)
	}
	return b[:n]
}

// checkQuery panics unless q holds T ≥ 1 tokens of g query heads of the tree's dimension
// and logTau one threshold per level (programmer errors: the caller built these shapes).
func (t *Tree) checkQuery(q []float32, g, thresholds int) {
	if g < 1 || len(q) == 0 || len(q)%(g*t.dim) != 0 {
		panic("index: query length is not a multiple of heads × dimension")
	}
	if thresholds != len(t.levels) {
		panic("index: need one threshold per level")
	}
}

// Lookup selects the leaf clusters of the tree for the queries q with the per-level
// log-thresholds logTau (len Levels(); −Inf keeps a whole level unscored), writing the
// result into sel. q holds T tokens × g query heads × Dim() values (token-major, post-RoPE,
// the g heads that share this KV head); T = 1 is a decode step, T > 1 one selection for a
// prefill block. See the package documentation for the scores. It panics if the shapes
// are inconsistent.
func (t *Tree) Lookup(s *Searcher, q []float32, g int, logTau []float32, sel *Selection) {
	t.checkQuery(q, g, len(logTau))
	sel.reset()
	c0 := len(t.levels[0].count)
	s.a = grow(s.a, c0)
	for j := range s.a {
		s.a[j] = int32(j)
	}
	s.runs = append(s.runs[:0], 0, int32(c0))
	last := len(t.levels) - 1
	for l := range t.levels {
		var surv []int32
		if math.IsInf(float64(logTau[l]), -1) {
			surv = append(s.b[:0], s.a...)
		} else {
			surv = t.survive(s, l, q, g, logTau[l], s.a, s.runs, s.b[:0])
			sel.Centroids += len(s.a)
		}
		s.b = surv
		st := t.levels[l].start
		if l == last {
			for _, j := range surv {
				sel.add(j, st[j], st[j+1])
			}
			break
		}
		// The survivors' children, and their runs: a parent's children are
		// consecutive, and so are two parents' stored side by side.
		s.a, s.runs = s.a[:0], append(s.runs[:0], 0)
		for _, j := range surv {
			if st[j] == st[j+1] {
				continue
			}
			if n := len(s.a); n > 0 && s.a[n-1]+1 != st[j] {
				s.runs = append(s.runs, int32(n))
			}
			for c := st[j]; c < st[j+1]; c++ {
				s.a = append(s.a, c)
			}
		}
		s.runs = append(s.runs, int32(len(s.a)))
	}
}

// LookupFlat selects leaf clusters by scoring every cluster of the finest level with the
// full denominator (the paper's one-level lookup), ignoring the coarser levels; logTau
// is the finest level's log-threshold. On a one-level tree it equals Lookup.
func (t *Tree) LookupFlat(s *Searcher, q []float32, g int, logTau float32, sel *Selection) {
	t.checkQuery(q, g, len(t.levels))
	sel.reset()
	last := len(t.levels) - 1
	lv := &t.levels[last]
	c := len(lv.count)
	s.a = grow(s.a, c)
	for j := range s.a {
		s.a[j] = int32(j)
	}
	s.runs = append(s.runs[:0], 0, int32(c))
	surv := s.a
	if !math.IsInf(float64(logTau), -1) {
		surv = t.survive(s, last, q, g, logTau, s.a, s.runs, s.b[:0])
		s.b = surv
		sel.Centroids = c
	}
	for _, j := range surv {
		sel.add(j, lv.start[j], lv.start[j+1])
	}
}

// lookupRef makes survive take its reference path (tests compare the two).
var lookupRef = false

// survive scores the clusters cand of level l and appends those whose score exceeds
// logTau to out. runs cuts cand into runs of consecutive clusters: run r is
// cand[runs[r]:runs[r+1]].
//
// The fast path computes the logits of each run of consecutive candidates (the
// children of one parent, or of parents stored side by side) by kernels.DotRowsF16 on
// the half-precision copy of the centroids (kernels.DotRows on the f32 ones if a level
// has none), every centroid read once for all the query vectors; a decode step (one token) then takes each vector's
// log-denominator by kernels.LogSumExp in float32 and compares each logit with
// logτ + logZ. The reference, surviveRef, takes one kernels.Dot per f32 centroid and
// vector and sums in float64. On centroids that half precision holds exactly (a
// decoded artifact's) the two select the same clusters except for scores within
// float32 rounding of logτ; on others, the copy's rounding (a relative 2^−11 per
// value) moves the scores a little more.
func (t *Tree) survive(s *Searcher, l int, q []float32, g int, logTau float32, cand, runs, out []int32) []int32 {
	if lookupRef {
		return t.surviveRef(s, l, q, g, logTau, cand, out)
	}
	lv := &t.levels[l]
	dim, nc := t.dim, len(cand)
	nv := len(q) / dim
	s.logits = grow(s.logits, nv*nc)
	s.logZ = grow(s.logZ, nv)
	s.x = grow(s.x, nc)
	s.lc = grow(s.lc, nc)
	s.thr = grow(s.thr, g)
	logits := s.logits
	// The runs lie at scattered addresses: their first centroids are prefetched
	// before any is scored, so that the reads from memory overlap.
	half := lv.cent16 != nil
	for r := 0; r+1 < len(runs); r++ {
		i, j := runs[r], runs[r+1]
		if i == j {
			continue
		}
		c0, c1 := int(cand[i]), min(int(cand[j-1])+1, int(cand[i])+prefetchRows)
		if half {
			kernels.Prefetch(lv.cent16[c0*dim : c1*dim])
		} else {
			kernels.Prefetch(lv.cent[c0*dim : c1*dim])
		}
	}
	for r := 0; r+1 < len(runs); r++ {
		i, j := runs[r], runs[r+1]
		if i == j {
			continue
		}
		c0, c1 := int(cand[i]), int(cand[j-1])+1
		if half {
			kernels.DotRowsF16(logits[i:], nc, q, nv, lv.cent16[c0*dim:c1*dim], dim)
		} else {
			kernels.DotRows(logits[i:], nc, q, nv, lv.cent[c0*dim:c1*dim], dim)
		}
	}
	kernels.Scale(logits, t.scale)
	inf := float32(math.Inf(1))
	x := s.x[:nc]
	lcs := s.lc[:nc]
	empty := s.empty[:0] // the candidates of empty clusters
	for ci, c := range cand {
		if lcs[ci] = lv.logCount[c]; !(lcs[ci] > -inf) {
			empty = append(empty, int32(ci))
		}
	}
	s.empty = empty
	nonEmpty := len(empty) < nc
	// Every logit is finite if the query is and |q|·|c| cannot overflow (centroids are
	// finite): then no logit needs checking.
	var qMax float32
	for _, x := range q {
		qMax = max(qMax, abs32(x)) // NaN or ±Inf make it NaN or +Inf
	}
	safe := qMax*lv.maxAbs < 1e30/float32(dim)
	if nv > g {
		// Prefill: mask empty clusters and non-finite logits, then logZ per query
		// vector, and the tokens' scores in float64. With every logit finite, a + log n
		// is −Inf exactly for the empty clusters, whose logits alone need masking.
		for v := range nv {
			row := logits[v*nc : (v+1)*nc]
			switch {
			case !safe:
				s.logZ[v] = t.maskedLogZ(lv, row, x, cand)
			case !nonEmpty:
				s.logZ[v] = math.Inf(1) // nothing to score: every score is −Inf
				for ci := range row {
					row[ci] = -inf
				}
			default:
				copy(x, row)
				kernels.Add(x, lcs)
				s.logZ[v] = float64(kernels.LogSumExp(x))
				for _, ci := range empty {
					row[ci] = -inf
				}
			}
		}
		return selectTokens(s, g, nc, logTau, cand, out)
	}
	// One token: logZ per vector from a + log n in float32 (empty clusters are −Inf
	// there and skipped below); a cluster survives if a_j > logτ + logZ for any head.
	thr := s.thr[:g]
	for v := range nv {
		row := logits[v*nc : (v+1)*nc]
		finite := safe
		if !safe {
			finite = true
			for _, a := range row {
				if !(a > -inf && a < inf) {
					finite = false
					break
				}
			}
		}
		switch {
		case !nonEmpty:
			thr[v] = inf // nothing to score: every score is −Inf
		case finite:
			copy(x, row)
			kernels.Add(x, lcs)
			thr[v] = logTau + kernels.LogSumExp(x)
		default:
			thr[v] = logTau + float32(t.maskedLogZ(lv, row, x, cand))
		}
	}
	for ci, c := range cand {
		if !(lcs[ci] > -inf) {
			continue
		}
		for h, th := range thr {
			if logits[h*nc+ci] > th {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// maskedLogZ sets the logits row of candidates cand that are non-finite or of empty
// clusters to −Inf and returns the log-denominator over the others (+Inf if there is
// none), using x as scratch.
func (t *Tree) maskedLogZ(lv *level, row, x []float32, cand []int32) float64 {
	inf := float32(math.Inf(1))
	finite := false
	for ci, c := range cand {
		a, lc := row[ci], lv.logCount[c]
		if !(a > -inf && a < inf) || !(lc > -inf) {
			row[ci], x[ci] = -inf, -inf
			continue
		}
		x[ci] = a + lc
		finite = true
	}
	if !finite {
		return math.Inf(1) // nothing to score: every score is −Inf
	}
	return float64(kernels.LogSumExp(x))
}

// prefetchRows is the number of centroids at the start of each run of candidates that
// survive prefetches.
const prefetchRows = 2

// surviveRef is survive's reference path.
func (t *Tree) surviveRef(s *Searcher, l int, q []float32, g int, logTau float32, cand, out []int32) []int32 {
	lv := &t.levels[l]
	dim, nc := t.dim, len(cand)
	nv := len(q) / dim
	s.logits = grow(s.logits, nv*nc)
	s.logZ = grow(s.logZ, nv)
	logits := s.logits
	for ci, c := range cand {
		cent := lv.cent[int(c)*dim : (int(c)+1)*dim]
		for v := range nv {
			logits[v*nc+ci] = kernels.Dot(q[v*dim:(v+1)*dim], cent) * t.scale
		}
	}
	// Mask empty clusters and non-finite logits, then logZ per query vector.
	inf := float32(math.Inf(1))
	for v := range nv {
		row := logits[v*nc : (v+1)*nc]
		m := math.Inf(-1)
		for ci, c := range cand {
			x, lc := row[ci], lv.logCount[c]
			if !(x > -inf && x < inf) || !(lc > -inf) {
				row[ci] = -inf
				continue
			}
			m = max(m, float64(x+lc))
		}
		if math.IsInf(m, -1) {
			s.logZ[v] = math.Inf(1) // nothing to score: every score is −Inf
			continue
		}
		var sum float64
		for ci, c := range cand {
			if x := row[ci]; x > -inf {
				sum += kernels.ExpNeg(float64(x+lv.logCount[c]) - m)
			}
		}
		s.logZ[v] = m + math.Log(sum)
	}
	return selectTokens(s, g, nc, logTau, cand, out)
}

// selectTokens appends to out the candidates whose score, from s.logits (masked) and
// s.logZ for the len(s.logZ)/g tokens of g heads, exceeds logTau.
func selectTokens(s *Searcher, g, nc int, logTau float32, cand, out []int32) []int32 {
	logits := s.logits
	nq := len(s.logZ) / g
	tau := float64(logTau)
	if nq == 1 {
		for ci, c := range cand {
			best := math.Inf(-1)
			for h := range g {
				best = max(best, float64(logits[h*nc+ci])-s.logZ[h])
			}
			if best > tau {
				out = append(out, c)
			}
		}
		return out
	}
	// A candidate's score for a head is log mean_i exp(score_i) over the tokens, by
	// log-sum-exp: every token's largest score first, then the exponentials relative
	// to it, a token's row of logits at a time (kernels.AddExpNeg), the tokens in order
	// as one candidate at a time would add them.
	top, sum := grow(s.top, g*nc), grow(s.sum, g*nc)
	s.top, s.sum = top, sum
	for i := range top {
		top[i], sum[i] = math.Inf(-1), 0
	}
	for v := range nq * g {
		t, z := top[v%g*nc:][:nc], s.logZ[v]
		for ci, x := range logits[v*nc : (v+1)*nc] {
			t[ci] = max(t[ci], float64(x)-z)
		}
	}
	for v := range nq * g {
		h := v % g
		kernels.AddExpNeg(sum[h*nc:(h+1)*nc], top[h*nc:(h+1)*nc], logits[v*nc:(v+1)*nc], s.logZ[v])
	}
	logNq := math.Log(float64(nq))
	for ci, c := range cand {
		best := math.Inf(-1)
		for h := range g {
			if mx := top[h*nc+ci]; !math.IsInf(mx, -1) {
				best = max(best, mx+math.Log(sum[h*nc+ci])-logNq)
			}
		}
		if best > tau {
			out = append(out, c)
		}
	}
	return out
}
