package index

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/kernels"
)

// randomTree builds a tree of the given levels over n keys with random centroids (of
// standard deviation sd, rounded to half precision unless sd ≥ 1000, where some are
// beyond its range) and random cluster sizes, some clusters empty.
func randomTree(t testing.TB, r *rand.Rand, dim, n int, clusters []int, sd float64) *Tree {
	t.Helper()
	levels := make([]Level, len(clusters))
	below := n
	for l := len(clusters) - 1; l >= 0; l-- {
		c := clusters[l]
		cuts := make([]int32, c-1)
		for i := range cuts {
			cuts[i] = int32(r.IntN(below + 1))
		}
		slices.Sort(cuts)
		start := append(append([]int32{0}, cuts...), int32(below))
		cent := make([]float32, c*dim)
		for i := range cent {
			cent[i] = float32(r.NormFloat64() * sd)
			if sd < 1e3 {
				// Values half precision holds, as a decoded tree's are.
				cent[i] = kernels.F16ToF32(kernels.F32ToF16(cent[i]))
			}
		}
		levels[l] = Level{Centroids: cent, Start: start}
		below = c
	}
	order := make([]int32, n)
	for i, p := range r.Perm(n) {
		order[i] = int32(p)
	}
	tr, err := New(dim, levels, order)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// defScores returns, by the definition of the package documentation in float64, the
// score of each candidate cluster of level l (−Inf for empty clusters).
func defScores(tr *Tree, l int, q []float32, g int, cand []int32) []float64 {
	lv := &tr.levels[l]
	dim := tr.dim
	nv := len(q) / dim
	nq := nv / g
	a := make([]float64, nv*len(cand))
	logZ := make([]float64, nv)
	for v := range nv {
		m := math.Inf(-1)
		for ci, c := range cand {
			var dot float64
			for d := range dim {
				dot += float64(q[v*dim+d]) * float64(lv.cent[int(c)*dim+d])
			}
			a[v*len(cand)+ci] = dot / math.Sqrt(float64(dim))
			if lv.count[c] > 0 {
				m = max(m, a[v*len(cand)+ci]+math.Log(float64(lv.count[c])))
			}
		}
		var sum float64
		for ci, c := range cand {
			if lv.count[c] > 0 {
				sum += float64(lv.count[c]) * math.Exp(a[v*len(cand)+ci]-m)
			}
		}
		logZ[v] = m + math.Log(sum)
	}
	scores := make([]float64, len(cand))
	for ci, c := range cand {
		scores[ci] = math.Inf(-1)
		if lv.count[c] == 0 {
			continue
		}
		for h := range g {
			var mean float64
			for i := range nq {
				v := i*g + h
				mean += math.Exp(a[v*len(cand)+ci] - logZ[v])
			}
			scores[ci] = max(scores[ci], math.Log(mean/float64(nq)))
		}
	}
	return scores
}

// TestSurvive checks both paths of survive against the documented scores on random
// trees, queries and candidate sets (a whole level, or the children of random parents):
// a cluster survives exactly when its score exceeds the threshold, except for scores
// within float32 rounding of it.
func TestSurvive(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	defer func() { lookupRef = false }()
	decided, f32Levels := 0, 0
	for trial := range 60 {
		dim := []int{64, 16, 7, 1}[trial%4]
		g := []int{1, 3, 4}[trial%3]
		tokens := []int{1, 1, 2, 5}[trial/3%4]
		n := 200 + r.IntN(2000)
		clusters := []int{3 + r.IntN(30), 40 + r.IntN(120)}
		sd, qsd := 0.5, 2.0
		if trial%10 == 9 {
			// Centroids beyond half precision: the fast path reads the f32 ones.
			sd, qsd = 3e4, 1e-4
		}
		tr := randomTree(t, r, dim, n, clusters, sd)
		for l, lv := range tr.levels {
			if (lv.cent16 == nil) != (lv.maxAbs > maxHalf) {
				t.Fatalf("trial %d level %d: half-precision copy %v with centroids up to %v", trial, l, lv.cent16 != nil, lv.maxAbs)
			}
			if lv.cent16 == nil {
				f32Levels++
			}
		}
		q := make([]float32, tokens*g*dim)
		for i := range q {
			q[i] = float32(r.NormFloat64() * qsd)
		}
		for l := range tr.Levels() {
			cand := make([]int32, 0, tr.Clusters(l))
			if l == 0 {
				for c := range tr.Clusters(0) {
					cand = append(cand, int32(c))
				}
			} else {
				st := tr.Start(l - 1)
				for p := range tr.Clusters(l - 1) {
					if r.IntN(3) == 0 {
						for c := st[p]; c < st[p+1]; c++ {
							cand = append(cand, c)
						}
					}
				}
				if len(cand) == 0 {
					continue
				}
			}
			want := defScores(tr, l, q, g, cand)
			finite := slices.DeleteFunc(slices.Clone(want), func(x float64) bool { return math.IsInf(x, -1) })
			if len(finite) < 2 {
				continue
			}
			slices.Sort(finite)
			k := r.IntN(len(finite) - 1)
			tau := float32((finite[k] + finite[k+1]) / 2)
			for _, ref := range []bool{true, false} {
				name := fmt.Sprintf("trial %d level %d dim %d g %d tokens %d ref %v", trial, l, dim, g, tokens, ref)
				lookupRef = ref
				var s Searcher
				got := tr.survive(&s, l, q, g, tau, cand, candRuns(cand), nil)
				for ci, c := range cand {
					kept := slices.Contains(got, c)
					if math.Abs(want[ci]-float64(tau)) < 1e-4*(1+math.Abs(float64(tau))) {
						continue
					}
					decided++
					if kept != (want[ci] > float64(tau)) {
						t.Fatalf("%s: cluster %d of score %v kept=%v with log-threshold %v", name, c, want[ci], kept, tau)
					}
				}
			}
		}
	}
	if decided < 1000 || f32Levels == 0 {
		t.Fatalf("only %d clear decisions checked, %d levels without a half-precision copy", decided, f32Levels)
	}
}

// TestLookupPathsAgree runs whole lookups (two and three levels, decode and prefill
// shapes) through both survive paths: the selections are identical (random scores fall
// within float32 rounding of a threshold with negligible probability, and these seeds
// have none).
func TestLookupPathsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	defer func() { lookupRef = false }()
	var s Searcher
	var ref, fast Selection
	selected := 0
	for trial := range 40 {
		dim := []int{64, 32, 5}[trial%3]
		g := []int{3, 1, 4}[trial%3]
		tokens := []int{1, 1, 4}[trial/3%3]
		n := 500 + r.IntN(5000)
		clusters := []int{n / 100, n / 20}
		if trial%4 == 0 {
			clusters = []int{4, n / 100, n / 20}
		}
		tr := randomTree(t, r, dim, n, clusters, 1)
		q := make([]float32, tokens*g*dim)
		for i := range q {
			q[i] = float32(r.NormFloat64())
		}
		logTau := make([]float32, tr.Levels())
		for l := range logTau {
			logTau[l] = float32(-math.Log(float64(n)) - r.Float64()*2)
		}
		lookupRef = true
		tr.Lookup(&s, q, g, logTau, &ref)
		lookupRef = false
		tr.Lookup(&s, q, g, logTau, &fast)
		if !slices.Equal(ref.Clusters, fast.Clusters) || !slices.Equal(ref.Spans, fast.Spans) ||
			ref.Keys != fast.Keys || ref.Centroids != fast.Centroids {
			t.Fatalf("trial %d: reference selects %v (%d keys, %d centroids), fast path %v (%d keys, %d centroids)",
				trial, ref.Clusters, ref.Keys, ref.Centroids, fast.Clusters, fast.Keys, fast.Centroids)
		}
		selected += len(ref.Clusters)
	}
	if selected == 0 {
		t.Fatal("no lookup selected anything")
	}
}

// BenchmarkLookup times one decode lookup (and one for a prefill block of 64 tokens) on a tree of the shape precompute builds for
// 32K keys (1% and 5% of the keys as clusters, 64 dimensions, 3 query heads per KV
// head), by the fast and the reference survive.
func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, dim, g = 32768, 64, 3
	tr := randomTree(b, r, dim, n, []int{n / 100, n / 20}, 1)
	// About a third of the first level survives, and an eighth of their children.
	logTau := []float32{-10.1, -8.7}
	defer func() { lookupRef = false }()
	for _, tokens := range []int{1, 64} {
		q := make([]float32, tokens*g*dim)
		for i := range q {
			q[i] = float32(r.NormFloat64())
		}
		for _, ref := range []bool{false, true} {
			name := fmt.Sprintf("tokens=%d/fast", tokens)
			if ref {
				name = fmt.Sprintf("tokens=%d/ref", tokens)
			}
			b.Run(name, func(b *testing.B) {
				lookupRef = ref
				var s Searcher
				var sel Selection
				for b.Loop() {
					tr.Lookup(&s, q, g, logTau, &sel)
				}
				b.ReportMetric(float64(sel.Centroids), "centroids")
				b.ReportMetric(float64(sel.Keys), "keys")
			})
		}
	}
}

// candRuns cuts cand into its runs of consecutive clusters, as survive takes them.
func candRuns(cand []int32) []int32 {
	runs := []int32{0}
	for i := 1; i < len(cand); i++ {
		if cand[i] != cand[i-1]+1 {
			runs = append(runs, int32(i))
		}
	}
	return append(runs, int32(len(cand)))
}
