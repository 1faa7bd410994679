package hierarchy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"squeeze/runtime/index"
	"testing"
)

// benchSetup builds a tree over n synthetic keys (d = 64, n/16 directions) and returns it
// with 64 tokens of g query heads near key directions: the first 32 for calibration, the
// rest for lookups.
func benchSetup(b *testing.B, seed uint64, n, g int) (*index.Tree, []float32, []float32) {
	const dim = 64
	keys, _, dirs := mixture(seed, n, n/16, dim, 0.6)
	tr, err := Build(context.Background(), keys, dim, nil, Config{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 21))
	q := gaussian(r, 64*g*dim, 0.5)
	for v := range 64 * g {
		d := dirs[r.IntN(len(dirs))]
		for k := range dim {
			q[v*dim+k] += 4 * d[k]
		}
	}
	half := 32 * g * dim
	return tr, q[:half], q[half:]
}

// BenchmarkLookup measures one decode-step lookup (G = 3 query heads of one KV head) at
// thresholds calibrated to budget 0.125, hierarchical (1 % + 5 %) and flat (5 %).
func BenchmarkLookup(b *testing.B) {
	const g = 3
	for _, n := range []int{8192, 32768} {
		tr, cal, test := benchSetup(b, 21, n, g)
		c, err := Calibrate(context.Background(), []*index.Tree{tr}, [][]float32{cal}, g, CalibrateConfig{Budget: 0.125})
		if err != nil {
			b.Fatal(err)
		}
		step := g * tr.Dim()
		tokens := len(test) / step
		b.Run(fmt.Sprintf("n=%d/hierarchical", n), func(b *testing.B) {
			var s index.Searcher
			var sel index.Selection
			cents, keys, i := 0, 0, 0
			for b.Loop() {
				tok := i % tokens
				tr.Lookup(&s, test[tok*step:(tok+1)*step], g, c.LogThresholds, &sel)
				cents += sel.Centroids
				keys += sel.Keys
				i++
			}
			b.ReportMetric(float64(cents)/float64(i), "centroids/op")
			b.ReportMetric(float64(keys)/float64(i)/float64(n), "keys/n")
			b.ReportMetric(c.Fraction, "calibrated")
		})
		b.Run(fmt.Sprintf("n=%d/flat", n), func(b *testing.B) {
			var s index.Searcher
			var sel index.Selection
			i := 0
			leaf := c.LogThresholds[len(c.LogThresholds)-1]
			for b.Loop() {
				tok := i % tokens
				tr.LookupFlat(&s, test[tok*step:(tok+1)*step], g, leaf, &sel)
				i++
			}
			b.ReportMetric(float64(sel.Centroids), "centroids/op")
		})
	}
}

// BenchmarkCalibrate calibrates 4 trees of 8192 keys (d = 64) with 100 calibration tokens
// of G = 3 heads each to budget 0.125.
func BenchmarkCalibrate(b *testing.B) {
	const g, trees = 3, 4
	var ts []*index.Tree
	var qs [][]float32
	for i := range trees {
		tr, cal, test := benchSetup(b, uint64(30+i), 8192, g)
		ts = append(ts, tr)
		q := append(append(append([]float32(nil), cal...), test...), cal[:36*g*tr.Dim()]...) // 100 tokens
		qs = append(qs, q)
	}
	evals := 0
	for b.Loop() {
		c, err := Calibrate(context.Background(), ts, qs, g, CalibrateConfig{Budget: 0.125, Threads: 1})
		if err != nil {
			b.Fatal(err)
		}
		evals = c.Evaluations
	}
	b.ReportMetric(float64(evals), "evaluations")
}

// BenchmarkBuild builds the default two-level tree (1 % and 5 %) over n synthetic keys of
// dimension 64 on one thread.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{8192, 32768} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			keys, _, _ := mixture(41, n, n/16, 64, 0.6)
			for b.Loop() {
				if _, err := Build(context.Background(), keys, 64, nil, Config{Threads: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		})
	}
}
