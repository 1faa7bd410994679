package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// untiled runs f with the tiled attention path switched off.
func untiled(f func()) {
	saved := tiledMinBatch
	defer func() { tiledMinBatch = saved }()
	tiledMinBatch = math.MaxInt
	f()
}

// TestAttentionTiled checks the tiled attention against the untiled one on random
// queries, keys and values: several pass sizes and cache depths, query heads per
// key/value head from 1 to 4 (and a head size that is not a whole panel), both cache
// types, with and without the log-sum-exps.
func TestAttentionTiled(t *testing.T) {
	specs := []modeltest.Spec{
		{Heads: 4, KVHeads: 4},
		{Heads: 4, KVHeads: 2},
		{Heads: 6, KVHeads: 2, Dim: 96},
		{Heads: 4, KVHeads: 1, HeadDim: 24},
	}
	shapes := []struct{ pos, n int }{{0, 64}, {37, 100}, {700, 300}}
	if !testing.Short() {
		shapes = append(shapes, struct{ pos, n int }{1500, MaxBatch})
	}
	p := kernels.NewPool(2)
	defer p.Close()
	for si, spec := range specs {
		spec.Context, spec.Seed = 2048, uint64(si)
		m := loadSpec(t, spec)
		cfg := &m.Config
		for _, kind := range []CacheType{CacheF32, CacheF16} {
			for _, sh := range shapes {
				for _, wantLSE := range []bool{false, true} {
					name := fmt.Sprintf("heads%d/kv%d/hd%d/%v/pos%d/n%d/lse=%v", cfg.Heads, cfg.KVHeads, cfg.HeadDim, kind, sh.pos, sh.n, wantLSE)
					c, err := m.NewCache(sh.pos+sh.n, kind)
					if err != nil {
						t.Fatal(err)
					}
					fillCache(c, sh.pos, uint64(sh.n))
					ws := &c.ws
					ws.ensure(c, sh.n, p.Threads())
					ws.ensurePrefix(sh.n, cfg)
					r := rand.New(rand.NewPCG(uint64(sh.pos), 9))
					for i := range ws.q[:sh.n*cfg.QDim()] {
						ws.q[i] = (r.Float32()*2 - 1) / 2
					}
					var want, wantL []float32
					untiled(func() {
						c.attention(p, 0, sh.pos, sh.n, wantLSE)
						want = append(want, ws.att[:sh.n*cfg.QDim()]...)
						wantL = append(wantL, ws.attLSE[:sh.n*cfg.Heads]...)
					})
					clear(ws.att)
					clear(ws.attLSE)
					c.attention(p, 0, sh.pos, sh.n, wantLSE)
					if d := relDiff(ws.att[:sh.n*cfg.QDim()], want); d > 1e-5 {
						t.Errorf("%s: outputs differ by %.2e", name, d)
					}
					if wantLSE {
						if d := relDiff(ws.attLSE[:sh.n*cfg.Heads], wantL); d > 1e-5 {
							t.Errorf("%s: log-sum-exps differ by %.2e", name, d)
						}
					}
				}
			}
		}
	}
}

// TestForwardTiled checks a 300-token prompt's logits with the tiled attention against
// the untiled path, with both cache types and with a Prefix (whose merge needs the
// cache attention's log-sum-exps).
func TestForwardTiled(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Heads: 6, KVHeads: 2, Dim: 96, Weights: gguf.TypeF16, Context: 1024, Seed: 4})
	p := kernels.NewPool(2)
	defer p.Close()
	vocab := m.Config.Vocab
	tokens := randomTokens(300, vocab, 5)
	for _, kind := range []CacheType{CacheF32, CacheF16} {
		for _, withPrefix := range []bool{false, true} {
			run := func() []float32 {
				c, err := m.NewCache(len(tokens), kind)
				if err != nil {
					t.Fatal(err)
				}
				opt := &Options{AllLogits: true}
				if withPrefix {
					pc, err := m.NewCache(100, kind)
					if err != nil {
						t.Fatal(err)
					}
					if err := m.Forward(p, pc, randomTokens(100, vocab, 6), nil, nil); err != nil {
						t.Fatal(err)
					}
					opt.Prefix = newDensePrefix(t, pc)
				}
				logits := make([]float32, len(tokens)*vocab)
				if err := m.Forward(p, c, tokens, logits, opt); err != nil {
					t.Fatal(err)
				}
				return logits
			}
			var want []float32
			untiled(func() { want = run() })
			// An f16 cache rounds every layer's keys and values to 11 bits, which turns
			// float rounding differences of one layer into larger ones of the next.
			tol := 1e-5
			if kind == CacheF16 {
				tol = 3e-4
			}
			d := relDiff(run(), want)
			t.Logf("%v cache, prefix %v: max|diff|/max|logit| = %.2e", kind, withPrefix, d)
			if d > tol {
				t.Errorf("%v cache, prefix %v: logits differ from the untiled path by %.2e (limit %.0e)", kind, withPrefix, d, tol)
			}
		}
	}
}
