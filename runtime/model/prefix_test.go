package model

import (
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// newDensePrefix is modeltest's float64 reference prefix for the context in c.
func newDensePrefix(t *testing.T, c *Cache) *modeltest.DensePrefix {
	t.Helper()
	cfg := &c.Model().Config
	return modeltest.NewDensePrefix(t, c, cfg.Layers, cfg.Heads, cfg.KVHeads, cfg.HeadDim)
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
