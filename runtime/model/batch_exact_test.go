package model

import (
	"fmt"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// TestBatchExact checks Options.Exact: a batch of tokens gets bitwise the logits, keys
// and values of one-token calls, for several architectures, weight and cache types,
// pool sizes (5 threads split each head's keys into parts) and prefixes, while a
// plain batch (the control) does not.
func TestBatchExact(t *testing.T) {
	specs := []modeltest.Spec{
		{Arch: "llama", Weights: gguf.TypeF16, Dim: 128, Heads: 4, KVHeads: 2, FFN: 256, Vocab: 512, Context: 1024},
		{Arch: "llama", Dim: 96, Heads: 6, KVHeads: 2, FFN: 160, Vocab: 300, Context: 1024},
		{Arch: "qwen2", Weights: gguf.TypeQ8_0, Dim: 128, Heads: 4, KVHeads: 1, FFN: 256, Vocab: 400, Context: 1024},
	}
	for si, spec := range specs {
		spec.Seed = uint64(si + 1)
		m := loadSpec(t, spec)
		for _, kind := range []CacheType{CacheF32, CacheF16} {
			for _, threads := range []int{1, 5} {
				for _, withPrefix := range []bool{false, true} {
					name := fmt.Sprintf("%s/%v/%v/threads=%d/prefix=%v", spec.Arch, spec.Weights, kind, threads, withPrefix)
					t.Run(name, func(t *testing.T) {
						p := kernels.NewPool(threads)
						defer p.Close()
						opt := &Options{}
						if withPrefix {
							pc, err := m.NewCache(200, CacheF32)
							if err != nil {
								t.Fatal(err)
							}
							if err := m.Forward(p, pc, randomTokens(200, m.Config.Vocab, 9), nil, nil); err != nil {
								t.Fatal(err)
							}
							opt.Prefix = newDensePrefix(t, pc)
						}
						prompt := randomTokens(300+si*97, m.Config.Vocab, uint64(si))
						tokens := randomTokens(9, m.Config.Vocab, uint64(si+50))
						want, wantCache := stepLogits(t, m, p, kind, prompt, tokens, opt)
						exact := *opt
						exact.Exact, exact.AllLogits = true, true
						got, gotCache := batchLogits(t, m, p, kind, prompt, tokens, &exact)
						if d := countDiff(got, want); d != 0 {
							t.Errorf("exact batch: %d of %d logits differ from one-token calls", d, len(want))
						}
						if !sameCache(t, gotCache, wantCache) {
							t.Errorf("exact batch: cached keys or values differ from one-token calls")
						}
						plain := *opt
						plain.AllLogits = true
						if got, _ := batchLogits(t, m, p, kind, prompt, tokens, &plain); countDiff(got, want) == 0 {
							t.Logf("control: a plain batch also matched (the batched kernels agree here)")
						}
					})
				}
			}
		}
	}
}

// TestBatchExactRollback checks that truncating an exact batch and running other tokens
// gives the logits a fresh cache computes for the same sequence.
func TestBatchExactRollback(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Arch: "llama", Weights: gguf.TypeF16, Dim: 128, Heads: 4, KVHeads: 2, FFN: 256, Vocab: 512, Context: 512, Seed: 4})
	p := kernels.NewPool(2)
	defer p.Close()
	vocab := m.Config.Vocab
	prompt := randomTokens(50, vocab, 1)
	draft := randomTokens(6, vocab, 2)
	next := randomTokens(4, vocab, 3)
	c, err := m.NewCache(100, CacheF16)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(p, c, prompt, nil, nil); err != nil {
		t.Fatal(err)
	}
	opt := &Options{Exact: true, AllLogits: true}
	if err := m.Forward(p, c, draft, make([]float32, len(draft)*vocab), opt); err != nil {
		t.Fatal(err)
	}
	keep := 2
	if err := c.Truncate(len(prompt) + keep); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(next)*vocab)
	if err := m.Forward(p, c, next, got, opt); err != nil {
		t.Fatal(err)
	}
	seq := append(append([]int32{}, prompt...), draft[:keep]...)
	want, _ := stepLogits(t, m, p, CacheF16, seq, next, nil)
	if d := countDiff(got, want); d != 0 {
		t.Errorf("after rollback, %d of %d logits differ from a fresh cache's", d, len(want))
	}
}

// stepLogits prefills prompt into a fresh cache, then runs tokens one Forward call at a
// time; it returns every step's logits and the cache.
func stepLogits(t *testing.T, m *Model, p *kernels.Pool, kind CacheType, prompt, tokens []int32, opt *Options) ([]float32, *Cache) {
	t.Helper()
	c := prefilled(t, m, p, kind, prompt, len(tokens), opt)
	vocab := m.Config.Vocab
	out := make([]float32, len(tokens)*vocab)
	one := Options{}
	if opt != nil {
		one.Prefix = opt.Prefix
	}
	for i, tok := range tokens {
		if err := m.Forward(p, c, []int32{tok}, out[i*vocab:(i+1)*vocab], &one); err != nil {
			t.Fatal(err)
		}
	}
	return out, c
}

// batchLogits prefills prompt into a fresh cache, then runs tokens in one Forward call
// with opt (which must ask for AllLogits).
func batchLogits(t *testing.T, m *Model, p *kernels.Pool, kind CacheType, prompt, tokens []int32, opt *Options) ([]float32, *Cache) {
	t.Helper()
	c := prefilled(t, m, p, kind, prompt, len(tokens), opt)
	out := make([]float32, len(tokens)*m.Config.Vocab)
	if err := m.Forward(p, c, tokens, out, opt); err != nil {
		t.Fatal(err)
	}
	return out, c
}

func prefilled(t *testing.T, m *Model, p *kernels.Pool, kind CacheType, prompt []int32, room int, opt *Options) *Cache {
	t.Helper()
	c, err := m.NewCache(len(prompt)+room, kind)
	if err != nil {
		t.Fatal(err)
	}
	pre := Options{}
	if opt != nil {
		pre.Prefix = opt.Prefix
	}
	if err := m.Forward(p, c, prompt, nil, &pre); err != nil {
		t.Fatal(err)
	}
	return c
}

func countDiff(a, b []float32) int {
	d := 0
	for i := range a {
		if a[i] != b[i] {
			d++
		}
	}
	return d
}

// sameCache reports whether two caches hold bitwise the same keys and values.
func sameCache(t *testing.T, a, b *Cache) bool {
	t.Helper()
	cfg := &a.Model().Config
	if a.Len() != b.Len() {
		return false
	}
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			for _, get := range []func(*Cache) ([]float32, error){
				func(c *Cache) ([]float32, error) {
					return c.Keys(l, h, 0, c.Len(), make([]float32, c.Len()*cfg.HeadDim))
				},
				func(c *Cache) ([]float32, error) {
					return c.Values(l, h, 0, c.Len(), make([]float32, c.Len()*cfg.HeadDim))
				},
			} {
				x, err := get(a)
				if err != nil {
					t.Fatal(err)
				}
				y, err := get(b)
				if err != nil {
					t.Fatal(err)
				}
				if countDiff(x, y) != 0 {
					return false
				}
			}
		}
	}
	return true
}
