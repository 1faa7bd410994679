package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// loadSpec builds, opens and loads a synthetic model.
func loadSpec(t *testing.T, s modeltest.Spec) *Model {
	t.Helper()
	m, err := Load(modeltest.Open(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomTokens returns n random tokens below vocab (modeltest's, seeded).
var randomTokens = modeltest.Tokens

// TestSyntheticAgainstNaive compares Forward with the float64 reference on random models
// of both architectures and several weight types.
func TestSyntheticAgainstNaive(t *testing.T) {
	tests := []struct {
		name string
		spec modeltest.Spec
		// tolerances of max|diff|/max|logit| with f32 and f16 caches
		tol32, tol16 float64
	}{
		{"llama/f32", modeltest.Spec{Arch: "llama"}, 1e-5, 3e-3},
		{"llama/f16/tied", modeltest.Spec{Arch: "llama", Weights: gguf.TypeF16, Tied: true}, 1e-5, 3e-3},
		// Q8_0 products round the activations to 8 bits, as llama.cpp does.
		{"llama/q8_0", modeltest.Spec{Arch: "llama", Weights: gguf.TypeQ8_0}, 3e-2, 3e-2},
		{"llama/mha", modeltest.Spec{Arch: "llama", Heads: 4, KVHeads: 4, RopeBase: 500}, 1e-5, 3e-3},
		{"llama/mqa/headdim", modeltest.Spec{Arch: "llama", Heads: 4, KVHeads: 1, HeadDim: 24}, 1e-5, 3e-3},
		{"llama/partial-rope/linear", modeltest.Spec{Arch: "llama", RopeDim: 8, RopeLinear: 4}, 1e-5, 3e-3},
		{"llama/rope-factors", modeltest.Spec{Arch: "llama", RopeFactors: true, RopeBase: 5e5}, 1e-5, 3e-3},
		{"qwen2/f32", modeltest.Spec{Arch: "qwen2", RopeBase: 1e6}, 1e-5, 3e-3},
		{"qwen2/q8_0/tied", modeltest.Spec{Arch: "qwen2", Weights: gguf.TypeQ8_0, Tied: true}, 3e-2, 3e-2},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Seed = uint64(i)
			m := loadSpec(t, tc.spec)
			if m.Config.TiedOutput != tc.spec.Tied {
				t.Errorf("TiedOutput = %v, want %v", m.Config.TiedOutput, tc.spec.Tied)
			}
			tokens := randomTokens(40, m.Config.Vocab, uint64(i))
			for _, c := range []struct {
				kind CacheType
				tol  float64
			}{{CacheF32, tc.tol32}, {CacheF16, tc.tol16}} {
				d := compareNaive(t, m, c.kind, tokens)
				t.Logf("%v cache: max|diff|/max|logit| = %.2e", c.kind, d)
				if d > c.tol {
					t.Errorf("%v cache: logits differ from the float64 reference by %.2e (limit %.0e)", c.kind, d, c.tol)
				}
			}
		})
	}
}

// TestBatchSplits checks that any split of a sequence into Forward calls, including calls
// longer than MaxBatch, gives the logits of one token-by-token pass.
func TestBatchSplits(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Context: 2048, Seed: 7})
	p := kernels.NewPool(2)
	defer p.Close()
	vocab := m.Config.Vocab
	n := MaxBatch + 37
	tokens := randomTokens(n, vocab, 3)
	single, _ := m.NewCache(n, CacheF32)
	want := make([]float32, n*vocab)
	for i, tok := range tokens {
		if err := m.Forward(p, single, []int32{tok}, want[i*vocab:(i+1)*vocab], nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, splits := range [][]int{{n}, {1, n - 1}, {5, 100, n - 105}, {MaxBatch, 37}} {
		c, _ := m.NewCache(n, CacheF32)
		got := make([]float32, n*vocab)
		at := 0
		for _, k := range splits {
			if err := m.Forward(p, c, tokens[at:at+k], got[at*vocab:(at+k)*vocab], &Options{AllLogits: true}); err != nil {
				t.Fatal(err)
			}
			at += k
		}
		if d := relDiff(got, want); d > 1e-5 {
			t.Errorf("splits %v: logits differ from token-by-token by %.2e", splits, d)
		}
		// Last-token logits of a long call equal the all-token ones.
		c.Reset()
		last := make([]float32, vocab)
		if err := m.Forward(p, c, tokens, last, nil); err != nil {
			t.Fatal(err)
		}
		if d := relDiff(last, want[(n-1)*vocab:]); d > 1e-5 {
			t.Errorf("last-token logits differ by %.2e", d)
		}
	}
}

// TestTruncate checks that rolling the cache back and re-running gives the same logits.
func TestTruncate(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Seed: 11})
	p := kernels.NewPool(2)
	defer p.Close()
	vocab := m.Config.Vocab
	for _, kind := range []CacheType{CacheF32, CacheF16} {
		c, _ := m.NewCache(64, kind)
		a := randomTokens(20, vocab, 1)
		b := randomTokens(10, vocab, 2)
		want := make([]float32, vocab)
		if err := m.Forward(p, c, a, want, nil); err != nil {
			t.Fatal(err)
		}
		if err := m.Forward(p, c, b, make([]float32, vocab), nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Truncate(19); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, vocab)
		if err := m.Forward(p, c, a[19:], got, nil); err != nil {
			t.Fatal(err)
		}
		if c.Len() != 20 {
			t.Errorf("Len after truncate and one token = %d, want 20", c.Len())
		}
		if d := relDiff(got, want); d > 1e-5 {
			t.Errorf("%v: logits after Truncate differ by %.2e", kind, d)
		}
		if err := c.Truncate(21); err == nil {
			t.Error("Truncate past Len succeeded")
		}
		if err := c.Truncate(-1); err == nil {
			t.Error("Truncate(-1) succeeded")
		}
		c.Reset()
		if c.Len() != 0 {
			t.Errorf("Len after Reset = %d", c.Len())
		}
	}
}

// TestObserve checks what Options.Observe receives against the cache and the LM head.
func TestObserve(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Arch: "qwen2", Seed: 5})
	cfg := m.Config
	p := kernels.NewPool(2)
	defer p.Close()
	c, _ := m.NewCache(64, CacheF32)
	if err := m.Forward(p, c, randomTokens(7, cfg.Vocab, 9), nil, nil); err != nil {
		t.Fatal(err)
	}
	tokens := randomTokens(5, cfg.Vocab, 8)
	logits := make([]float32, len(tokens)*cfg.Vocab)
	var layers []int
	var lastHidden, prevHidden []float32
	var keys, vals [][]float32
	opt := &Options{AllLogits: true, Observe: func(s *LayerState) {
		layers = append(layers, s.Layer)
		if s.Pos != 7 || s.Tokens != len(tokens) {
			t.Errorf("layer %d: Pos %d Tokens %d, want 7 and %d", s.Layer, s.Pos, s.Tokens, len(tokens))
		}
		if s.Layer > 0 && !slices.Equal(s.Input, prevHidden) {
			t.Errorf("layer %d: Input is not the previous layer's Hidden", s.Layer)
		}
		prevHidden = slices.Clone(s.Hidden)
		keys = append(keys, slices.Clone(s.Keys))
		vals = append(vals, slices.Clone(s.Values))
		// Pre-RoPE keys rotate into the keys.
		rotated := slices.Clone(s.KeysPreRoPE)
		for i := range s.Tokens {
			m.Rotate(rotated[i*cfg.KVDim():(i+1)*cfg.KVDim()], s.Pos+i)
		}
		if d := relDiff(rotated, s.Keys); d > 1e-6 {
			t.Errorf("layer %d: rotated KeysPreRoPE differ from Keys by %.2e", s.Layer, d)
		}
		lastHidden = slices.Clone(s.Hidden)
	}}
	if err := m.Forward(p, c, tokens, logits, opt); err != nil {
		t.Fatal(err)
	}
	// Keys and values are what the cache holds.
	for l := range keys {
		for h := range cfg.KVHeads {
			n := len(tokens)
			cached, err := c.Keys(l, h, 7, 7+n, make([]float32, n*cfg.HeadDim))
			if err != nil {
				t.Fatal(err)
			}
			cachedVals, _ := c.Values(l, h, 7, 7+n, make([]float32, n*cfg.HeadDim))
			for i := range n {
				at := i*cfg.KVDim() + h*cfg.HeadDim
				if !slices.Equal(cached[i*cfg.HeadDim:(i+1)*cfg.HeadDim], keys[l][at:at+cfg.HeadDim]) {
					t.Errorf("layer %d head %d token %d: Keys differ from the cache", l, h, i)
				}
				if !slices.Equal(cachedVals[i*cfg.HeadDim:(i+1)*cfg.HeadDim], vals[l][at:at+cfg.HeadDim]) {
					t.Errorf("layer %d head %d token %d: Values differ from the cache", l, h, i)
				}
			}
		}
	}
	if fmt.Sprint(layers) != fmt.Sprint([]int{0, 1}) {
		t.Errorf("observed layers %v, want [0 1]", layers)
	}
	head := make([]float32, len(logits))
	m.Head(p, lastHidden, len(tokens), head)
	if d := relDiff(head, logits); d > 1e-6 {
		t.Errorf("Head of the last layer's Hidden differs from the logits by %.2e", d)
	}
}

// TestLoadErrors checks that broken or foreign files fail with errors naming the problem.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		spec modeltest.Spec
		want error
		text string
	}{
		{"architecture", modeltest.Spec{Arch: "gpt2"}, ErrArchitecture, `"gpt2"`},
		{"missing tensor", modeltest.Spec{Omit: []string{"blk.1.ffn_up.weight"}}, ErrTensor, "blk.1.ffn_up.weight"},
		{"missing bias", modeltest.Spec{Arch: "qwen2", Omit: []string{"blk.0.attn_k.bias"}}, ErrTensor, "blk.0.attn_k.bias"},
		{"missing embedding", modeltest.Spec{Omit: []string{"token_embd.weight"}}, ErrTensor, "token_embd.weight"},
		{"missing norm", modeltest.Spec{Omit: []string{"output_norm.weight"}}, ErrTensor, "output_norm.weight"},
		{"wrong shape", modeltest.Spec{Shapes: map[string][]uint64{"blk.0.attn_k.weight": {64, 48}}}, ErrTensor, "blk.0.attn_k.weight has shape [64 48]"},
		{"wrong output shape", modeltest.Spec{Shapes: map[string][]uint64{"output.weight": {64, 299}}}, ErrTensor, "output.weight"},
		{"3-d norm", modeltest.Spec{Shapes: map[string][]uint64{"blk.1.ffn_norm.weight": {64, 2}}}, ErrTensor, "blk.1.ffn_norm.weight"},
		{"missing block count", modeltest.Spec{Meta: map[string]any{"llama.block_count": nil}}, ErrMetadata, "llama.block_count"},
		{"string head count", modeltest.Spec{Meta: map[string]any{"llama.attention.head_count": "four"}}, ErrMetadata, "llama.attention.head_count"},
		{"uneven groups", modeltest.Spec{Meta: map[string]any{"llama.attention.head_count_kv": uint32(3)}}, ErrMetadata, "key/value heads"},
		{"rope scaling", modeltest.Spec{Meta: map[string]any{"llama.rope.scaling.type": "yarn"}}, ErrMetadata, "yarn"},
		{"no architecture", modeltest.Spec{Meta: map[string]any{"general.architecture": nil}}, ErrMetadata, "general.architecture"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(modeltest.Open(t, tc.spec))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load: %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Load: %q does not mention %q", err, tc.text)
			}
		})
	}
}

// TestForwardErrors checks the errors of bad Forward calls and that they leave the cache
// unchanged.
func TestForwardErrors(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Seed: 3})
	other := loadSpec(t, modeltest.Spec{Seed: 4})
	p := kernels.NewPool(2)
	defer p.Close()
	vocab := m.Config.Vocab
	c, err := m.NewCache(16, CacheF16)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(p, c, randomTokens(10, vocab, 1), nil, nil); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, 8*vocab)
	tests := []struct {
		name   string
		model  *Model
		tokens []int32
		logits []float32
		opt    *Options
		want   error
		text   string
	}{
		{"context full", m, randomTokens(8, vocab, 2), logits, nil, ErrContextFull, "2 over"},
		{"token too large", m, []int32{1, int32(vocab)}, logits, nil, ErrToken, "300"},
		{"negative token", m, []int32{-1}, logits, nil, ErrToken, "-1"},
		{"short logits", m, []int32{1, 2}, logits[:vocab], &Options{AllLogits: true}, nil, "room for"},
		{"no tokens", m, nil, logits, nil, nil, "no tokens"},
		{"other model", other, []int32{1}, logits, nil, nil, "another model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.model.Forward(p, c, tc.tokens, tc.logits, tc.opt)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Forward: %v, want %v mentioning %q", err, tc.want, tc.text)
			}
			if c.Len() != 10 {
				t.Errorf("a failed Forward changed Len to %d", c.Len())
			}
		})
	}
	if err := m.Forward(nil, c, []int32{1}, logits, nil); err == nil {
		t.Error("Forward without a pool succeeded")
	}
	if err := m.Forward(p, nil, []int32{1}, logits, nil); err == nil {
		t.Error("Forward without a cache succeeded")
	}
	if _, err := m.NewCache(8, CacheType(9)); err == nil {
		t.Error("NewCache with an unknown type succeeded")
	}
	full, _ := m.NewCache(0, CacheF32)
	if full.Cap() != m.Config.ContextLength {
		t.Errorf("NewCache(0) holds %d positions, want the context length %d", full.Cap(), m.Config.ContextLength)
	}
}

// TestDecodeAllocations checks that decoding a token allocates nothing once the cache's
// workspace exists.
func TestDecodeAllocations(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Seed: 2, Context: 1024})
	p := kernels.NewPool(2)
	defer p.Close()
	for _, kind := range []CacheType{CacheF32, CacheF16} {
		c, _ := m.NewCache(0, kind)
		logits := make([]float32, m.Config.Vocab)
		tok := []int32{5}
		if err := m.Forward(p, c, tok, logits, nil); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(50, func() {
			if err := m.Forward(p, c, tok, logits, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v cache: decoding a token allocates %v times", kind, allocs)
		}
	}
}

// TestThreadCounts checks decoding on pools of several sizes against the float64
// reference: with more threads than (key/value head, token block) units, attention splits
// each key span into parts and merges them.
func TestThreadCounts(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Seed: 13, Context: 1024})
	vocab := m.Config.Vocab
	const n, prefill = 700, 640
	tokens := randomTokens(n, vocab, 5)
	want := newNaive(t, m).forward(tokens)
	for _, threads := range []int{1, 3, 7} {
		p := kernels.NewPool(threads)
		for _, kind := range []CacheType{CacheF32, CacheF16} {
			tol := 1e-5
			if kind == CacheF16 {
				tol = 3e-3
			}
			c, _ := m.NewCache(0, kind)
			if err := m.Forward(p, c, tokens[:prefill], nil, nil); err != nil {
				t.Fatal(err)
			}
			logits := make([]float32, (n-prefill-10)*vocab)
			// Ten tokens one at a time, then the rest (two query blocks) in one batch.
			worst := 0.0
			for i := prefill; i < prefill+10; i++ {
				if err := m.Forward(p, c, tokens[i:i+1], logits[:vocab], nil); err != nil {
					t.Fatal(err)
				}
				worst = max(worst, relDiff64(logits[:vocab], want[i]))
			}
			if err := c.Truncate(prefill + 10); err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(p, c, tokens[prefill+10:], logits, &Options{AllLogits: true}); err != nil {
				t.Fatal(err)
			}
			for i := range n - prefill - 10 {
				worst = max(worst, relDiff64(logits[i*vocab:(i+1)*vocab], want[prefill+10+i]))
			}
			t.Logf("%d threads, %v cache: max|diff|/max|logit| = %.2e", threads, kind, worst)
			if worst > tol {
				t.Errorf("%d threads, %v cache: logits differ from the float64 reference by %.2e", threads, kind, worst)
			}
		}
		p.Close()
	}
}
