package hierarchy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"squeeze/runtime/index"
	"testing"
)

// mixture returns n keys of dimension dim drawn around c random directions (norms 0.5 to
// 4, relative noise noise) and the direction of each key, plus the directions.
func mixture(seed uint64, n, c, dim int, noise float64) (keys []float32, truth []int, dirs [][]float32) {
	r := rand.New(rand.NewPCG(seed, 99))
	dirs = make([][]float32, c)
	for j := range dirs {
		dirs[j] = unit(r, dim)
	}
	keys = make([]float32, n*dim)
	truth = make([]int, n)
	for i := range n {
		j := r.IntN(c)
		truth[i] = j
		s := 0.5 + 3.5*r.Float64()
		for t := range dim {
			keys[i*dim+t] = float32(s * (float64(dirs[j][t]) + noise*r.NormFloat64()))
		}
	}
	return keys, truth, dirs
}

func unit(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	var s float64
	for t := range v {
		x := r.NormFloat64()
		v[t] = float32(x)
		s += x * x
	}
	for t := range v {
		v[t] /= float32(math.Sqrt(s))
	}
	return v
}

// gaussian returns n·dim standard normal values times scale.
func gaussian(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * r.NormFloat64())
	}
	return v
}

// thresholds returns log-thresholds for a tree of the given levels: t for the finest,
// drop less for each level above.
func thresholds(t float64, levels int, drop float64) []float32 {
	out := make([]float32, levels)
	for l := range out {
		out[l] = float32(t - drop*float64(levels-1-l))
	}
	return out
}

// keyRange returns the storage range [lo, hi) of the keys under cluster j of level l.
func keyRange(t *index.Tree, l, j int) (int, int) {
	lo, hi := j, j+1
	for ; l < t.Levels(); l++ {
		st := t.Start(l)
		lo, hi = int(st[lo]), int(st[hi])
	}
	return lo, hi
}

func TestBuildStructure(t *testing.T) {
	const n, dim = 3000, 16
	keys, _, _ := mixture(1, n, 40, dim, 0.3)
	tests := []struct {
		name      string
		fractions []float64
		clusters  []int
	}{
		{"default", nil, []int{30, 150}},
		{"flat", []float64{0.05}, []int{150}},
		{"three levels", []float64{0.002, 0.02, 0.1}, []int{6, 60, 300}},
		{"every key its own leaf", []float64{0.1, 1}, []int{300, 3000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Build(context.Background(), keys, dim, nil, Config{Fractions: tc.fractions, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			if tr.Levels() != len(tc.clusters) || tr.Len() != n || tr.Dim() != dim {
				t.Fatalf("%d levels, %d keys, dim %d", tr.Levels(), tr.Len(), tr.Dim())
			}
			// Order is a permutation of key indices (positions were nil).
			seen := make([]bool, n)
			for _, p := range tr.Order() {
				if seen[p] {
					t.Fatalf("key %d stored twice", p)
				}
				seen[p] = true
			}
			for l, c := range tc.clusters {
				if tr.Clusters(l) != c {
					t.Fatalf("level %d: %d clusters, want %d", l, tr.Clusters(l), c)
				}
				for j := range c {
					lo, hi := keyRange(tr, l, j)
					if int(tr.Counts(l)[j]) != hi-lo || hi == lo {
						t.Fatalf("level %d cluster %d: count %d, %d keys beneath", l, j, tr.Counts(l)[j], hi-lo)
					}
					// The centroid is the mean of all raw keys beneath.
					for d := range dim {
						var s float64
						for _, p := range tr.Order()[lo:hi] {
							s += float64(keys[int(p)*dim+d])
						}
						want := s / float64(hi-lo)
						if got := float64(tr.Centroids(l)[j*dim+d]); math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
							t.Fatalf("level %d cluster %d: centroid[%d] = %v, mean of keys %v", l, j, d, got, want)
						}
					}
				}
			}
			// Keys within a leaf are stored in position order.
			last := tr.Levels() - 1
			st := tr.Start(last)
			for j := range tr.Clusters(last) {
				if !slices.IsSorted(tr.Order()[st[j]:st[j+1]]) {
					t.Fatalf("leaf %d not in position order", j)
				}
			}
		})
	}
}

func TestBuildDeterministic(t *testing.T) {
	const n, dim = 5000, 8
	keys, _, _ := mixture(2, n, 30, dim, 0.5)
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(100 + 2*i)
	}
	var ref []byte
	for _, threads := range []int{1, 2, 5} {
		tr, err := Build(context.Background(), keys, dim, pos, Config{Seed: 9, Threads: threads, BlockSize: 2000})
		if err != nil {
			t.Fatal(err)
		}
		b, err := tr.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = b
			if slices.Min(tr.Order()) != 100 || slices.Max(tr.Order()) != int32(100+2*(n-1)) {
				t.Fatal("Order does not report the given positions")
			}
		} else if !slices.Equal(b, ref) {
			t.Fatalf("threads %d: tree differs", threads)
		}
	}
}

func TestBuildInvalid(t *testing.T) {
	keys := []float32{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name string
		keys []float32
		dim  int
		pos  []int32
		cfg  Config
		want error
	}{
		{"no keys", nil, 2, nil, Config{}, ErrInvalid},
		{"ragged", keys[:5], 2, nil, Config{}, ErrInvalid},
		{"positions length", keys, 2, []int32{0, 1}, Config{}, ErrInvalid},
		{"duplicate positions", keys, 2, []int32{0, 1, 1}, Config{}, ErrInvalid},
		{"negative position", keys, 2, []int32{0, -1, 2}, Config{}, ErrInvalid},
		{"fractions decrease", keys, 2, nil, Config{Fractions: []float64{0.5, 0.2}}, ErrInvalid},
		{"fraction above 1", keys, 2, nil, Config{Fractions: []float64{2}}, ErrInvalid},
		{"no levels", keys, 2, nil, Config{Fractions: []float64{}}, ErrInvalid},
		{"NaN key", []float32{1, float32(math.NaN())}, 2, nil, Config{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), tc.keys, tc.dim, tc.pos, tc.cfg)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// refFlat selects leaf clusters by the documented formula in float64, independently of
// the package's code: for each head the log of the mean over tokens of exp(a − logZ),
// then the maximum over heads.
func refFlat(tr *index.Tree, q []float32, g int, logTau float64) []int32 {
	l := tr.Levels() - 1
	dim, c := tr.Dim(), tr.Clusters(l)
	cent, cnt := tr.Centroids(l), tr.Counts(l)
	nv := len(q) / dim
	nq := nv / g
	a := make([][]float64, nv)
	logZ := make([]float64, nv)
	for v := range nv {
		a[v] = make([]float64, c)
		m := math.Inf(-1)
		for j := range c {
			var s float64
			for d := range dim {
				s += float64(q[v*dim+d]) * float64(cent[j*dim+d])
			}
			a[v][j] = s / math.Sqrt(float64(dim))
			if cnt[j] > 0 {
				m = max(m, a[v][j]+math.Log(float64(cnt[j])))
			}
		}
		var s float64
		for j := range c {
			if cnt[j] > 0 {
				s += float64(cnt[j]) * math.Exp(a[v][j]-m)
			}
		}
		logZ[v] = m + math.Log(s)
	}
	var out []int32
	for j := range c {
		if cnt[j] == 0 {
			continue
		}
		best := math.Inf(-1)
		for h := range g {
			var p float64
			for i := range nq {
				p += math.Exp(a[i*g+h][j] - logZ[i*g+h])
			}
			best = max(best, math.Log(p/float64(nq)))
		}
		if best > logTau {
			out = append(out, int32(j))
		}
	}
	return out
}

func TestOneLevelLookupIsFlat(t *testing.T) {
	const n, dim = 2000, 32
	keys, _, _ := mixture(3, n, 25, dim, 0.4)
	tr, err := Build(context.Background(), keys, dim, nil, Config{Fractions: []float64{0.05}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	var s index.Searcher
	var hier, flat index.Selection
	for trial := range 60 {
		g := 1 + trial%3
		tokens := 1 + (trial/3)%4
		q := gaussian(r, tokens*g*dim, 2)
		logTau := float32(-math.Log(float64(n)) + r.Float64()*4 - 2)
		tr.Lookup(&s, q, g, []float32{logTau}, &hier)
		tr.LookupFlat(&s, q, g, logTau, &flat)
		if !slices.Equal(hier.Clusters, flat.Clusters) || !slices.Equal(hier.Spans, flat.Spans) || hier.Keys != flat.Keys || hier.Centroids != flat.Centroids {
			t.Fatalf("trial %d: hierarchical %v, flat %v", trial, hier.Clusters, flat.Clusters)
		}
		// Scores within float32 rounding of a threshold may differ from the float64
		// reference: require agreement up to clusters that lie within 1e-4 of it.
		want := refFlat(tr, q, g, float64(logTau))
		loose := refFlat(tr, q, g, float64(logTau)-1e-4)
		strict := refFlat(tr, q, g, float64(logTau)+1e-4)
		for _, j := range strict {
			if !slices.Contains(flat.Clusters, j) {
				t.Fatalf("trial %d: cluster %d missing (reference %v, got %v)", trial, j, want, flat.Clusters)
			}
		}
		for _, j := range flat.Clusters {
			if !slices.Contains(loose, j) {
				t.Fatalf("trial %d: cluster %d selected (reference %v)", trial, j, want)
			}
		}
		if hier.Centroids != tr.Clusters(0) {
			t.Fatalf("read %d centroids of %d", hier.Centroids, tr.Clusters(0))
		}
		checkSpans(t, tr, &flat)
	}
}

// checkSpans checks that the spans cover exactly the selected clusters' keys, ascending
// and merged.
func checkSpans(t *testing.T, tr *index.Tree, sel *index.Selection) {
	t.Helper()
	st := tr.Start(tr.Levels() - 1)
	var want []index.Span
	keys := 0
	for _, j := range sel.Clusters {
		lo, hi := st[j], st[j+1]
		if lo == hi {
			t.Fatalf("empty cluster %d selected", j)
		}
		keys += int(hi - lo)
		if k := len(want) - 1; k >= 0 && want[k].End == lo {
			want[k].End = hi
		} else {
			want = append(want, index.Span{Start: lo, End: hi})
		}
	}
	if !slices.Equal(want, sel.Spans) || keys != sel.Keys {
		t.Fatalf("spans %v (%d keys), clusters give %v (%d keys)", sel.Spans, sel.Keys, want, keys)
	}
}

func TestBudgetOneSelectsEverything(t *testing.T) {
	const n, dim, g = 1500, 16, 3
	keys, _, _ := mixture(4, n, 10, dim, 0.5)
	tr, err := Build(context.Background(), keys, dim, nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	cal, err := Calibrate(context.Background(), []*index.Tree{tr}, [][]float32{gaussian(r, 20*g*dim, 1)}, g, CalibrateConfig{Budget: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range cal.LogThresholds {
		if !math.IsInf(float64(th), -1) {
			t.Fatalf("thresholds %v, want all −Inf", cal.LogThresholds)
		}
	}
	if cal.Fraction != 1 || cal.KeyFraction != 1 || cal.CentroidFraction != 0 {
		t.Fatalf("fraction %v (keys %v, centroids %v), want 1", cal.Fraction, cal.KeyFraction, cal.CentroidFraction)
	}
	var s index.Searcher
	var sel index.Selection
	for _, tokens := range []int{1, 7} {
		tr.Lookup(&s, gaussian(r, tokens*g*dim, 100), g, cal.LogThresholds, &sel)
		if sel.Keys != n || sel.Centroids != 0 || !slices.Equal(sel.Spans, []index.Span{{Start: 0, End: n}}) {
			t.Fatalf("budget 1: %d keys, %d centroids, spans %v", sel.Keys, sel.Centroids, sel.Spans)
		}
	}
}

func TestLookupFindsAlignedCluster(t *testing.T) {
	for _, scale := range []float32{1, 1e4} {
		t.Run(fmt.Sprintf("scale %g", scale), func(t *testing.T) {
			const n, dim, c, g = 4000, 64, 20, 3
			keys, truth, dirs := mixture(5, n, c, dim, 0.05)
			for i := range keys {
				keys[i] *= scale
			}
			tr, err := Build(context.Background(), keys, dim, nil, Config{Seed: 2})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 5))
			var s index.Searcher
			var sel index.Selection
			for target := range c {
				// The three heads look for the target direction with different strengths
				// and a little noise.
				q := gaussian(r, g*dim, 0.02)
				for h := range g {
					for d := range dim {
						q[h*dim+d] += float32(20+5*h) * dirs[target][d]
					}
				}
				logTau := thresholds(math.Log(0.5/n), tr.Levels(), 3)
				tr.Lookup(&s, q, g, logTau, &sel)
				selected := make(map[int32]bool, sel.Keys)
				onTarget := 0
				for _, sp := range sel.Spans {
					for _, p := range tr.Order()[sp.Start:sp.End] {
						selected[p] = true
						if truth[p] == target {
							onTarget++
						}
					}
				}
				// Directions are random (cosines up to about 0.35 between them): a few
				// neighbouring leaves may pass too, but most of the selection is on target.
				if onTarget == 0 || 2*onTarget < sel.Keys {
					t.Fatalf("target %d: %d keys selected, %d on target", target, sel.Keys, onTarget)
				}
				if scale != 1 {
					// Attention is nearly one-hot: only the best leaves survive.
					continue
				}
				for i, tj := range truth {
					if tj == target && !selected[int32(i)] {
						t.Fatalf("target %d: key %d of the target direction not selected (%d keys selected)", target, i, sel.Keys)
					}
				}
				checkSpans(t, tr, &sel)
			}
		})
	}
}

func TestPrefillOfIdenticalTokens(t *testing.T) {
	const n, dim, g = 2000, 16, 2
	keys, _, _ := mixture(6, n, 30, dim, 0.5)
	tr, err := Build(context.Background(), keys, dim, nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(6, 6))
	var s index.Searcher
	var one, many index.Selection
	for range 20 {
		q := gaussian(r, g*dim, 2)
		logTau := thresholds(-math.Log(n)+r.Float64()*2-1, tr.Levels(), 2)
		tr.Lookup(&s, q, g, logTau, &one)
		tr.Lookup(&s, slices.Concat(q, q, q, q, q), g, logTau, &many)
		if !slices.Equal(one.Clusters, many.Clusters) || one.Centroids != many.Centroids {
			t.Fatalf("5 identical tokens select %v, one token %v", many.Clusters, one.Clusters)
		}
	}
}

// attentionMass returns the softmax attention mass of the selected keys for each query
// vector of q, averaged.
func attentionMass(tr *index.Tree, keys, q []float32, sel *index.Selection) float64 {
	dim := tr.Dim()
	in := make([]bool, tr.Len())
	for _, sp := range sel.Spans {
		for _, p := range tr.Order()[sp.Start:sp.End] {
			in[p] = true
		}
	}
	var total float64
	nv := len(q) / dim
	for v := range nv {
		logits := make([]float64, tr.Len())
		m := math.Inf(-1)
		for i := range logits {
			var s float64
			for d := range dim {
				s += float64(q[v*dim+d]) * float64(keys[i*dim+d])
			}
			logits[i] = s / math.Sqrt(float64(dim))
			m = max(m, logits[i])
		}
		var all, part float64
		for i, x := range logits {
			e := math.Exp(x - m)
			all += e
			if in[i] {
				part += e
			}
		}
		total += part / all
	}
	return total / float64(nv)
}

func TestAttentionMassGrowsWithBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("computes exact attention for many queries")
	}
	const n, dim, g, trees = 4000, 32, 2, 3
	r := rand.New(rand.NewPCG(7, 7))
	var ts []*index.Tree
	var allKeys, cal, test [][]float32
	for i := range trees {
		keys, _, _ := mixture(uint64(70+i), n, 200, dim, 0.7)
		tr, err := Build(context.Background(), keys, dim, nil, Config{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tr)
		allKeys = append(allKeys, keys)
		cal = append(cal, gaussian(r, 16*g*dim, 1.5))
		test = append(test, gaussian(r, 8*g*dim, 1.5))
	}
	prev := 0.0
	var s index.Searcher
	var sel index.Selection
	for _, budget := range []float64{0.05, 0.1, 0.2, 0.4, 0.7, 1} {
		c, err := Calibrate(context.Background(), ts, cal, g, CalibrateConfig{Budget: budget})
		if err != nil {
			t.Fatal(err)
		}
		var mass float64
		for i, tr := range ts {
			for off := 0; off < len(test[i]); off += g * dim {
				q := test[i][off : off+g*dim]
				tr.Lookup(&s, q, g, c.LogThresholds, &sel)
				mass += attentionMass(tr, allKeys[i], q, &sel)
			}
		}
		mass /= float64(trees * 8)
		t.Logf("budget %.2f: calibrated fraction %.4f, attention mass %.4f", budget, c.Fraction, mass)
		if mass < prev-1e-3 {
			t.Fatalf("budget %v: attention mass %v below %v at the previous budget", budget, mass, prev)
		}
		prev = mass
	}
	if math.Abs(prev-1) > 1e-9 {
		t.Fatalf("budget 1 captures mass %v", prev)
	}
}

func TestCalibrateHitsBudget(t *testing.T) {
	const n, dim, g, trees = 3000, 32, 3, 4
	r := rand.New(rand.NewPCG(8, 8))
	var ts []*index.Tree
	var qs [][]float32
	for i := range trees {
		keys, _, dirs := mixture(uint64(80+i), n, 100, dim, 0.6)
		tr, err := Build(context.Background(), keys, dim, nil, Config{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tr)
		// Queries near some key directions, so attention is peaked as in a model.
		q := gaussian(r, 24*g*dim, 0.5)
		for v := range 24 * g {
			d := dirs[r.IntN(len(dirs))]
			for k := range dim {
				q[v*dim+k] += 4 * d[k]
			}
		}
		qs = append(qs, q)
	}
	for _, budget := range []float64{0.08, 0.125, 0.325, 0.6} {
		c, err := Calibrate(context.Background(), ts, qs, g, CalibrateConfig{Budget: budget, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(c.Fraction-budget) > 0.01*budget+0.002 {
			t.Fatalf("budget %v: calibrated fraction %v", budget, c.Fraction)
		}
		// Recompute the fraction with plain lookups.
		var s index.Searcher
		var sel index.Selection
		var got float64
		for i, tr := range ts {
			for off := 0; off < len(qs[i]); off += g * dim {
				tr.Lookup(&s, qs[i][off:off+g*dim], g, c.LogThresholds, &sel)
				got += float64(sel.Keys) + DefaultCentroidCost*float64(sel.Centroids)
			}
		}
		got /= float64(trees * 24 * n)
		if math.Abs(got-c.Fraction) > 1e-12 {
			t.Fatalf("budget %v: reported %v, lookups give %v", budget, c.Fraction, got)
		}
		t.Logf("budget %v: fraction %.5f (keys %.5f, centroids %.5f) after %d evaluations, thresholds %v",
			budget, c.Fraction, c.KeyFraction, c.CentroidFraction, c.Evaluations, c.LogThresholds)
		// The same thresholds again: deterministic.
		c2, err := Calibrate(context.Background(), ts, qs, g, CalibrateConfig{Budget: budget, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.LogThresholds, c2.LogThresholds) {
			t.Fatalf("budget %v: thresholds %v with 2 threads, %v with 1", budget, c.LogThresholds, c2.LogThresholds)
		}
	}
}

func TestCalibrateInvalid(t *testing.T) {
	keys, _, _ := mixture(9, 200, 5, 4, 0.5)
	tr, err := Build(context.Background(), keys, 4, nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	flat, err := Build(context.Background(), keys, 4, nil, Config{Fractions: []float64{0.1}})
	if err != nil {
		t.Fatal(err)
	}
	q := make([]float32, 8)
	tests := []struct {
		name    string
		trees   []*index.Tree
		queries [][]float32
		cfg     CalibrateConfig
	}{
		{"budget 0", []*index.Tree{tr}, [][]float32{q}, CalibrateConfig{}},
		{"budget above 1", []*index.Tree{tr}, [][]float32{q}, CalibrateConfig{Budget: 1.5}},
		{"no trees", nil, nil, CalibrateConfig{Budget: 0.5}},
		{"queries per tree", []*index.Tree{tr}, nil, CalibrateConfig{Budget: 0.5}},
		{"ragged queries", []*index.Tree{tr}, [][]float32{q[:7]}, CalibrateConfig{Budget: 0.5}},
		{"no queries", []*index.Tree{tr}, [][]float32{nil}, CalibrateConfig{Budget: 0.5}},
		{"NaN query", []*index.Tree{tr}, [][]float32{{1, 2, float32(math.NaN()), 4, 0, 0, 0, 0}}, CalibrateConfig{Budget: 0.5}},
		{"levels differ", []*index.Tree{tr, flat}, [][]float32{q, q}, CalibrateConfig{Budget: 0.5}},
		{"coarse slack below 1", []*index.Tree{tr}, [][]float32{q}, CalibrateConfig{Budget: 0.5, CoarseSlack: 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Calibrate(context.Background(), tc.trees, tc.queries, 2, tc.cfg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestEmptyClustersAndExtremeLogits(t *testing.T) {
	const dim = 4
	// Level 0: cluster 0 has no children, cluster 1 has leaves 0..2, cluster 2 leaf 3.
	// Leaves 0 and 2 are empty; all centroids of empty clusters are zero vectors, and the
	// real clusters point away from the queries, so an unmasked empty cluster would be
	// the maximum.
	tr, err := index.New(dim, []index.Level{
		{Centroids: []float32{0, 0, 0, 0, -1e4, 0, 0, 0, -3, 1, 0, 0}, Start: []int32{0, 0, 3, 4}},
		{Centroids: []float32{0, 0, 0, 0, -1e4, 0, 0, 0, 0, 0, 0, 0, -3, 1, 0, 0}, Start: []int32{0, 0, 5, 5, 9}},
	}, []int32{8, 7, 6, 5, 4, 3, 2, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Counts(0), []int32{0, 5, 4}) || !slices.Equal(tr.Counts(1), []int32{0, 5, 0, 4}) {
		t.Fatalf("counts %v %v", tr.Counts(0), tr.Counts(1))
	}
	var s index.Searcher
	var sel index.Selection
	tests := []struct {
		name  string
		q     []float32
		tau   []float32
		want  []int32
		cents int
	}{
		// Logit −1e4·1e3/2: without masking, exp underflows for every real cluster.
		{"huge negative logits, low threshold", []float32{1e3, 0, 0, 0}, []float32{-1e30, -1e30}, []int32{1, 3}, 3 + 4},
		{"real cluster dominates", []float32{1e3, 0, 0, 0}, []float32{-2, -2}, []int32{3}, 3 + 1},
		{"huge positive logits", []float32{-1e3, 0, 0, 0}, []float32{-2, -2}, []int32{1}, 3 + 3},
		{"zero query", []float32{0, 0, 0, 0}, []float32{-3, -3}, []int32{1, 3}, 3 + 4},
		{"NaN query", []float32{float32(math.NaN()), 0, 0, 0}, []float32{-1e30, -1e30}, nil, 3},
		{"Inf query", []float32{float32(math.Inf(1)), 0, 0, 0}, []float32{-1e30, -1e30}, nil, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, tokens := range []int{1, 3} {
				q := slices.Repeat(tc.q, tokens)
				tr.Lookup(&s, q, 1, tc.tau, &sel)
				if !slices.Equal(sel.Clusters, tc.want) || sel.Centroids != tc.cents {
					t.Fatalf("%d tokens: selected %v reading %d centroids, want %v reading %d", tokens, sel.Clusters, sel.Centroids, tc.want, tc.cents)
				}
				checkSpans(t, tr, &sel)
			}
		})
	}
	cal, err := Calibrate(context.Background(), []*index.Tree{tr}, [][]float32{{1e3, 0, 0, 0, -1e3, 0, 0, 0, 0, 1, 0, 0}}, 1, CalibrateConfig{Budget: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	if math.IsNaN(cal.Fraction) || slices.ContainsFunc(cal.LogThresholds, func(x float32) bool { return math.IsNaN(float64(x)) }) {
		t.Fatalf("calibration %+v", cal)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	const n, dim, g = 3000, 16, 3
	keys, _, _ := mixture(12, n, 50, dim, 0.5)
	tr, err := Build(context.Background(), keys, dim, nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(12, 12))
	decode, prefill := gaussian(r, g*dim, 2), gaussian(r, 16*g*dim, 2)
	logTau := thresholds(-math.Log(n), tr.Levels(), 1)
	var s index.Searcher
	var sel index.Selection
	tr.Lookup(&s, prefill, g, logTau, &sel) // grows the buffers
	tr.LookupFlat(&s, prefill, g, logTau[len(logTau)-1], &sel)
	allocs := testing.AllocsPerRun(50, func() {
		tr.Lookup(&s, decode, g, logTau, &sel)
		tr.Lookup(&s, prefill, g, logTau, &sel)
		tr.LookupFlat(&s, decode, g, logTau[len(logTau)-1], &sel)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per lookup", allocs)
	}
}

func TestBuildDegenerate(t *testing.T) {
	tests := []struct {
		name string
		keys []float32
		dim  int
	}{
		{"one key", []float32{1, 2, 3}, 3},
		{"identical keys", slices.Repeat([]float32{0.5, -1}, 500), 2},
		{"zero keys", make([]float32, 400), 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Build(context.Background(), tc.keys, tc.dim, nil, Config{})
			if err != nil {
				t.Fatal(err)
			}
			n := len(tc.keys) / tc.dim
			var s index.Searcher
			var sel index.Selection
			q := make([]float32, tc.dim)
			q[0] = 1
			tr.Lookup(&s, q, 1, thresholds(-math.Log(float64(n))-1e-3, tr.Levels(), 0), &sel)
			// Every key has the same logit: all are selected at a threshold just below
			// the uniform probability 1/n.
			if sel.Keys != n {
				t.Fatalf("%d of %d keys selected", sel.Keys, n)
			}
		})
	}
}
