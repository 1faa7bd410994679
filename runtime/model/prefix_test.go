package model

import (
	"math"
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// densePrefix attends to every key of a context prefilled in its own cache, in float64.
type densePrefix struct {
	cfg        *Config
	n          int
	keys, vals [][]float32 // per layer*KVHeads+head: n x HeadDim
}

func newDensePrefix(t *testing.T, c *Cache) *densePrefix {
	cfg := &c.Model().Config
	p := &densePrefix{cfg: cfg, n: c.Len()}
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			k, err := c.Keys(l, h, 0, c.Len(), make([]float32, c.Len()*cfg.HeadDim))
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.Values(l, h, 0, c.Len(), make([]float32, c.Len()*cfg.HeadDim))
			if err != nil {
				t.Fatal(err)
			}
			p.keys, p.vals = append(p.keys, k), append(p.vals, v)
		}
	}
	return p
}

func (p *densePrefix) Len() int { return p.n }

func (p *densePrefix) Attend(layer int, q []float32, n int, out, lse []float32) {
	cfg := p.cfg
	hd, group := cfg.HeadDim, cfg.Heads/cfg.KVHeads
	sc := make([]float64, p.n)
	for i := range n {
		for h := range cfg.Heads {
			k, v := p.keys[layer*cfg.KVHeads+h/group], p.vals[layer*cfg.KVHeads+h/group]
			qv := q[(i*cfg.Heads+h)*hd:][:hd]
			m := math.Inf(-1)
			for j := range p.n {
				var s float64
				for d := range hd {
					s += float64(qv[d]) * float64(k[j*hd+d])
				}
				sc[j] = s
				m = max(m, s)
			}
			acc := make([]float64, hd)
			var sum float64
			for j := range p.n {
				w := math.Exp(sc[j] - m)
				sum += w
				for d := range hd {
					acc[d] += w * float64(v[j*hd+d])
				}
			}
			for d := range hd {
				out[(i*cfg.Heads+h)*hd+d] = float32(acc[d] / sum)
			}
			lse[i*cfg.Heads+h] = float32(m + math.Log(sum))
		}
	}
}

// TestPrefixMatchesOneCache checks that attending to a context through a dense Prefix
// gives the logits of the context and the query prefilled in one cache, for a batched
// query and for tokens decoded one at a time.
func TestPrefixMatchesOneCache(t *testing.T) {
	for i, tc := range []struct {
		name  string
		spec  modeltest.Spec
		query int
	}{
		{"llama", modeltest.Spec{Arch: "llama"}, 12},
		{"qwen2", modeltest.Spec{Arch: "qwen2", RopeBase: 1e6, Dim: 96, Heads: 6, KVHeads: 2}, 12},
		// One KV head and a query past 256 positions: decoding splits the cache's keys
		// into parts (merged before the prefix is).
		{"llama/mqa/split", modeltest.Spec{Arch: "llama", RopeDim: 8, RopeLinear: 4, Heads: 4, KVHeads: 1}, 270},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.Seed = uint64(i + 20)
			m := loadSpec(t, spec)
			vocab := m.Config.Vocab
			pool := kernels.NewPool(2)
			defer pool.Close()
			ctx := randomTokens(70, vocab, uint64(i))
			query := randomTokens(tc.query, vocab, uint64(i+7))
			const batch = 5 // the first query tokens in one pass, then one at a time

			one, err := m.NewCache(400, CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(pool, one, ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			own, err := m.NewCache(400, CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(pool, own, ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			prefix := newDensePrefix(t, own)
			split, err := m.NewCache(300, CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, batch*vocab)
			got := make([]float32, batch*vocab)
			step := func(tokens []int32) {
				n := len(tokens)
				if err := m.Forward(pool, one, tokens, want[:n*vocab], &Options{AllLogits: true}); err != nil {
					t.Fatal(err)
				}
				if err := m.Forward(pool, split, tokens, got[:n*vocab], &Options{AllLogits: true, Prefix: prefix}); err != nil {
					t.Fatal(err)
				}
				if d := relDiff(got[:n*vocab], want[:n*vocab]); d > 2e-5 {
					t.Fatalf("at %d: logits differ by %g (relative)", split.Len(), d)
				}
			}
			step(query[:batch])
			for j := batch; j < len(query); j++ {
				step(query[j : j+1])
			}
			if split.Len() != len(query) {
				t.Fatalf("cache holds %d positions, want %d", split.Len(), len(query))
			}
		})
	}
}
