package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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

// greedyRef is the greedy token of each of the n hidden states by HeadExact: the first
// index of the largest logit.
func greedyRef(m *Model, p *kernels.Pool, hidden []float32, n int) []int32 {
	vocab := m.Config.Vocab
	logits := make([]float32, n*vocab)
	m.HeadExact(p, slices.Clone(hidden), n, logits)
	out := make([]int32, n)
	for v := range n {
		best := float32(math.Inf(-1))
		for i, x := range logits[v*vocab : (v+1)*vocab] {
			if x > best {
				out[v], best = int32(i), x
			}
		}
	}
	return out
}

// TestGreedyHead checks GreedyHead.Argmax against the argmax of HeadExact's logits on
// random hidden states (of several scales, one with an outlier dimension, one of
// zeros), for f16 and f32 heads, tied or not, several pool sizes and batch sizes; then
// on heads crafted for ties (a duplicated row: the first index must win) and near-ties
// (rows one half-precision step apart), where the 8-bit estimates cannot decide and
// the exact logits must.
func TestGreedyHead(t *testing.T) {
	if !kernels.FastI8Dots() {
		m := loadSpec(t, modeltest.Spec{Arch: "llama", Weights: gguf.TypeF16, Dim: 64, Heads: 2, KVHeads: 1, FFN: 64, Vocab: 300, Context: 64, Seed: 1})
		if m.GreedyHead() != nil {
			t.Fatal("GreedyHead without fast int8 dot products")
		}
		t.Skip("no fast int8 dot products: GreedyHead is nil, as it should be")
	}
	specs := []modeltest.Spec{
		{Arch: "llama", Weights: gguf.TypeF16, Dim: 128, Heads: 4, KVHeads: 2, FFN: 256, Vocab: 1000, Context: 64, Seed: 3},
		{Arch: "llama", Dim: 96, Heads: 6, KVHeads: 2, FFN: 160, Vocab: 517, Context: 64, Seed: 4},
		{Arch: "llama", Weights: gguf.TypeF16, Dim: 64, Heads: 2, KVHeads: 1, FFN: 64, Vocab: 300, Context: 64, Tied: true, Seed: 5},
	}
	r := rand.New(rand.NewPCG(7, 8))
	check := func(t *testing.T, m *Model, hidden []float32, n int) {
		t.Helper()
		for _, threads := range []int{1, 2, 3} {
			p := kernels.NewPool(threads)
			want := greedyRef(m, p, hidden, n)
			got := make([]int32, n)
			m.GreedyHead().Argmax(p, slices.Clone(hidden), n, got)
			p.Close()
			if !slices.Equal(got, want) {
				t.Fatalf("threads=%d: Argmax %v, HeadExact's argmax %v", threads, got, want)
			}
		}
	}
	for _, spec := range specs {
		t.Run(fmt.Sprintf("%v/dim=%d/tied=%v", spec.Weights, spec.Dim, spec.Tied), func(t *testing.T) {
			m := loadSpec(t, spec)
			dim := m.Config.Dim
			for _, n := range []int{1, 3, 9} {
				hidden := make([]float32, n*dim)
				for i := range hidden {
					hidden[i] = float32(r.NormFloat64()) * float32(1+i/dim)
				}
				if n > 1 {
					hidden[dim+5] = 40 // an outlier dimension
					clear(hidden[2*dim : 3*dim])
				}
				check(t, m, hidden, n)
			}
		})
	}
	t.Run("ties", func(t *testing.T) {
		base := loadSpec(t, specs[0])
		cfg := base.Config
		rows := make([]float32, cfg.Vocab*cfg.Dim)
		for i := range rows {
			rows[i] = float32(r.NormFloat64()) * 0.05
		}
		const first, dup, near = 17, 600, 901
		copy(rows[dup*cfg.Dim:(dup+1)*cfg.Dim], rows[first*cfg.Dim:(first+1)*cfg.Dim])
		copy(rows[near*cfg.Dim:(near+1)*cfg.Dim], rows[first*cfg.Dim:(first+1)*cfg.Dim])
		enc, err := kernels.Quantize(gguf.TypeF16, rows)
		if err != nil {
			t.Fatal(err)
		}
		// Row near: one element one half-precision step larger.
		at := 2 * (near*cfg.Dim + 3)
		enc[at]++
		head, err := kernels.NewMatrix(gguf.TypeF16, cfg.Vocab, cfg.Dim, enc)
		if err != nil {
			t.Fatal(err)
		}
		m := &Model{Config: cfg, outNorm: base.outNorm, output: head}
		// Hidden states along row first (after the final norm, roughly), with the sign
		// of element 3 making row near larger or smaller than rows first and dup.
		hidden := make([]float32, 2*cfg.Dim)
		for v := range 2 {
			for j := range cfg.Dim {
				hidden[v*cfg.Dim+j] = rows[first*cfg.Dim+j] / base.outNorm[j] * 20
			}
		}
		hidden[3] = 5
		hidden[cfg.Dim+3] = -5
		check(t, m, hidden, 2)
		got := make([]int32, 2)
		p := kernels.NewPool(2)
		defer p.Close()
		m.GreedyHead().Argmax(p, slices.Clone(hidden), 2, got)
		t.Logf("tokens %v (first %d, duplicate %d, near %d)", got, first, dup, near)
		// One hidden state ranks row near above the tied rows first and dup, the other
		// below them, where the tie must go to first.
		if !(got[0] == first && got[1] == near || got[0] == near && got[1] == first) {
			t.Errorf("tokens %v, want %d and %d in some order", got, first, near)
		}
	})
	t.Run("no finite logit", func(t *testing.T) {
		// A NaN hidden state has no finite logit: −1, as sampling such logits fails.
		m := loadSpec(t, specs[0])
		dim := m.Config.Dim
		hidden := make([]float32, 2*dim)
		for i := range hidden {
			hidden[i] = float32(r.NormFloat64())
		}
		hidden[dim+3] = float32(math.NaN())
		got := make([]int32, 2)
		p := kernels.NewPool(2)
		defer p.Close()
		m.GreedyHead().Argmax(p, slices.Clone(hidden), 2, got)
		if want := greedyRef(m, p, hidden[:dim], 1)[0]; got[0] != want || got[1] != -1 {
			t.Errorf("tokens %v, want %d and -1", got, want)
		}
	})
	t.Run("quantized head", func(t *testing.T) {
		m := loadSpec(t, modeltest.Spec{Arch: "llama", Weights: gguf.TypeQ8_0, Dim: 64, Heads: 2, KVHeads: 1, FFN: 64, Vocab: 300, Context: 64, Seed: 6})
		if m.GreedyHead() != nil {
			t.Error("GreedyHead on a Q8_0 head")
		}
	})
}
