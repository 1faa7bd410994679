package sparse

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"

	"squeeze/runtime/internal/threadcpu"
)

// benchConfig has gocode-22m's attention shape: 10 layers, 6 query heads sharing 2 KV
// heads of 64 dimensions.
var benchConfig = model.Config{Layers: 10, Dim: 384, Heads: 6, KVHeads: 2, HeadDim: 64}

// benchContext is a synthetic context of S keys per (layer, KV head): clusters of 20
// keys around random centers, a two-level tree (20 keys per leaf, 5 leaves per parent:
// 5% and 1% of the keys), the first 4 and last 64 positions always attended.
func benchContext(b *testing.B, S int) *Context {
	cfg := &benchConfig
	rng := rand.New(rand.NewPCG(uint64(S), 9))
	gen := func(l, h int) []float32 { return clustered(rng, S, cfg.HeadDim, 20, 1) }
	var always []int32
	for p := range S {
		if p < 4 || p >= S-64 {
			always = append(always, int32(p))
		}
	}
	return synthContext(b, cfg.Layers, cfg.KVHeads, cfg.HeadDim, S, gen, gen, always, 20, 5)
}

// calibrate finds one log-threshold for both levels whose realized budget over the
// queries is about budget (bisection; the measure is nearly monotone).
func calibrate(b *testing.B, c *Context, pool *kernels.Pool, qs [][]float32, budget float64) Threshold {
	cfg := &benchConfig
	lo, hi := -30.0, 0.0
	var th Threshold
	out := make([]float32, cfg.QDim())
	lse := make([]float32, cfg.Heads)
	for range 30 {
		mid := (lo + hi) / 2
		th = Threshold{Budget: budget, LogTau: []float32{float32(mid), float32(mid)}}
		c.Thresholds = []Threshold{th}
		s, err := newSession(c, cfg, pool, budget)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range qs {
			for l := range cfg.Layers {
				s.Attend(l, q, 1, out, lse)
			}
		}
		th.Fraction = s.Stats().RealizedBudget()
		if th.Fraction > budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	return th
}

// reportCPU reports the thread's CPU time per operation since cpu0 (where threadcpu.Now
// measures it): on a shared machine it varies less than the wall time.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	if cpu := threadcpu.Now(); cpu0 > 0 && cpu > cpu0 {
		b.ReportMetric(float64(cpu-cpu0)/1e6/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkDecodeAttention times the attention part of one decode step (Attend in
// every layer) over a synthetic context, dense and at budget 0.125, on one thread.
func BenchmarkDecodeAttention(b *testing.B) {
	cfg := &benchConfig
	for _, S := range []int{8192, 32768} {
		c := benchContext(b, S)
		pool := kernels.NewPool(1)
		rng := rand.New(rand.NewPCG(1, 1))
		qs := make([][]float32, 16)
		for i := range qs {
			qs[i] = randVec(rng, cfg.QDim(), 0.25)
		}
		th := calibrate(b, c, pool, qs[:4], 0.125)
		c.Thresholds = []Threshold{th}
		for _, budget := range []float64{1, 0.125} {
			b.Run(fmt.Sprintf("S=%d/budget=%g", S, budget), func(b *testing.B) {
				s, err := newSession(c, cfg, pool, budget)
				if err != nil {
					b.Fatal(err)
				}
				out := make([]float32, cfg.QDim())
				lse := make([]float32, cfg.Heads)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				i := 0
				cpu0 := threadcpu.Now()
				for b.Loop() {
					q := qs[i%len(qs)]
					i++
					for l := range cfg.Layers {
						s.Attend(l, q, 1, out, lse)
					}
				}
				reportCPU(b, cpu0)
				st := s.Stats()
				b.ReportMetric(st.RealizedBudget(), "budget")
				b.ReportMetric(st.KeysFraction(), "keys")
				b.ReportMetric(st.CentroidsFraction(), "centroids")
				if math.IsNaN(float64(out[0])) {
					b.Fatal("NaN output")
				}
			})
		}
		pool.Close()
	}
}

// BenchmarkPrefillAttention times the attention part of prefilling a 64-token query
// (one lookup per layer and KV head for the batch) over a synthetic context of 32768
// keys, dense and at budget 0.125, on one thread.
func BenchmarkPrefillAttention(b *testing.B) {
	cfg := &benchConfig
	const S, n = 32768, 64
	c := benchContext(b, S)
	pool := kernels.NewPool(1)
	defer pool.Close()
	rng := rand.New(rand.NewPCG(2, 2))
	qs := make([][]float32, 4)
	for i := range qs {
		qs[i] = randVec(rng, cfg.QDim(), 0.25)
	}
	c.Thresholds = []Threshold{calibrate(b, c, pool, qs, 0.125)}
	q := randVec(rng, n*cfg.QDim(), 0.25)
	out := make([]float32, n*cfg.QDim())
	lse := make([]float32, n*cfg.Heads)
	for _, budget := range []float64{1, 0.125} {
		b.Run(fmt.Sprintf("S=%d/n=%d/budget=%g", S, n, budget), func(b *testing.B) {
			s, err := newSession(c, cfg, pool, budget)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				for l := range cfg.Layers {
					s.Attend(l, q, n, out, lse)
				}
			}
			b.ReportMetric(s.Stats().RealizedBudget(), "budget")
		})
	}
}
