package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// prefillDepths are the cache depths the depth benchmarks prefill a batch after.
var prefillDepths = []int{0, 4096, 16384, 31232}

// fillCache makes c hold depth positions of random keys and values, as if a prefill
// had written them (the attention's cost does not depend on what they are).
func fillCache(c *Cache, depth int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range c.k32 {
		c.k32[i] = r.Float32()*2 - 1
	}
	for i := range c.v32 {
		c.v32[i] = r.Float32()*2 - 1
	}
	for i := range c.k16 {
		c.k16[i] = kernels.F32ToF16(r.Float32()*2 - 1)
	}
	for i := range c.v16 {
		c.v16[i] = kernels.F32ToF16(r.Float32()*2 - 1)
	}
	c.n = depth
}

// attentionFlops is the multiply-adds times two of one layer's attention for n tokens
// after depth positions: every query head scores and weights depth+i+1 keys for token i.
func attentionFlops(cfg *Config, depth, n int) float64 {
	keys := float64(n)*float64(depth) + float64(n)*float64(n+1)/2
	return 4 * keys * float64(cfg.Heads*cfg.HeadDim)
}

// BenchmarkPrefillDepth measures a prefill pass of 512 tokens after depth positions of
// context (random keys and values stand in for a real prefill) with the F16 gocode-22m
// and an f16 cache, 2 threads, as precompute runs it, with the tiled attention and with
// the untiled one that small passes keep. It reports tokens/s.
func BenchmarkPrefillDepth(b *testing.B) {
	const n = 512
	for _, path := range []string{"tiled", "untiled"} {
		for _, depth := range prefillDepths {
			b.Run(fmt.Sprintf("%s/depth%d", path, depth), func(b *testing.B) {
				if path == "untiled" {
					saved := tiledMinBatch
					defer func() { tiledMinBatch = saved }()
					tiledMinBatch = n + 1
				}
				m := openModel(b, "models", "gocode-22m", "gocode-22m.gguf")
				p := kernels.NewPool(2)
				defer p.Close()
				c, err := m.NewCache(depth+n, CacheF16)
				if err != nil {
					b.Fatal(err)
				}
				fillCache(c, depth, 1)
				tokens := randomTokens(n, m.Config.Vocab, 1)
				b.ResetTimer()
				for range b.N {
					if err := c.Truncate(depth); err != nil {
						b.Fatal(err)
					}
					if err := m.Forward(p, c, tokens, nil, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}

// BenchmarkAttentionDepth measures one layer's attention alone for a pass of 512 tokens
// after depth positions, with gocode-22m's attention shape (a synthetic one-layer model,
// so it runs anywhere), both cache types and both paths (tiled, and the untiled one that
// small passes keep), 2 threads, and reports the arithmetic rate (GFLOP/s, two per
// multiply-add of the scores and the weighted values).
func BenchmarkAttentionDepth(b *testing.B) {
	const n = 512
	for _, path := range []string{"tiled", "untiled"} {
		for _, kind := range []CacheType{CacheF16, CacheF32} {
			for _, depth := range prefillDepths {
				b.Run(fmt.Sprintf("%s/%v/depth%d", path, kind, depth), func(b *testing.B) {
					if path == "untiled" {
						saved := tiledMinBatch
						defer func() { tiledMinBatch = saved }()
						tiledMinBatch = n + 1
					}
					m, err := Load(modeltest.Open(b, modeltest.Spec{Layers: 1, Dim: 384, Heads: 6, KVHeads: 2, FFN: 64, Vocab: 64, Context: 1 << 16}))
					if err != nil {
						b.Fatal(err)
					}
					p := kernels.NewPool(2)
					defer p.Close()
					c, err := m.NewCache(depth+n, kind)
					if err != nil {
						b.Fatal(err)
					}
					fillCache(c, depth+n, 2)
					c.ws.ensure(c, n, p.Threads())
					r := rand.New(rand.NewPCG(3, 4))
					for i := range c.ws.q[:n*m.Config.QDim()] {
						c.ws.q[i] = (r.Float32()*2 - 1) / 8
					}
					b.ResetTimer()
					for range b.N {
						c.attention(p, 0, depth, n, false)
					}
					flops := attentionFlops(&m.Config, depth, n) * float64(b.N)
					b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
