package earlyexit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/sample"
	"squeeze/runtime/speculate"
)

// sharedModel loads the model s describes with every layer's tensors replaced by those
// of layer i mod period (period 0 keeps them distinct), and squeeze.block_share set as
// gocode-shared sets it (unless s.Meta is set).
func sharedModel(t testing.TB, s modeltest.Spec, period int) (*model.Model, *gguf.File) {
	t.Helper()
	if period > 0 && s.Meta == nil {
		s.Meta = map[string]any{BlockShareKey: uint32(period)}
	}
	s.BlockShare = period
	m, f, _ := testmodel.Spec(t, s)
	return m, f
}

// plainGreedy decodes n tokens after prompt one Forward at a time: the reference.
func plainGreedy(t testing.TB, m *model.Model, p *kernels.Pool, prefix model.Prefix, prompt []int32, n int) []int32 {
	t.Helper()
	c, err := m.NewCache(len(prompt)+n, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	opt := &model.Options{Prefix: prefix}
	logits := make([]float32, m.Config.Vocab)
	if err := m.Forward(p, c, prompt, logits, opt); err != nil {
		t.Fatal(err)
	}
	var out []int32
	for {
		tok := argmax(logits)
		out = append(out, tok)
		if len(out) == n {
			return out
		}
		if err := m.Forward(p, c, []int32{tok}, logits, opt); err != nil {
			t.Fatal(err)
		}
	}
}

// pipelined decodes n tokens after prompt with a Pipeline whose cache has room for
// exactly the prompt and the n tokens.
func pipelined(t testing.TB, m *model.Model, p *kernels.Pool, prefix model.Prefix, prompt []int32, n int, o PipelineOptions) ([]int32, PipelineStats) {
	t.Helper()
	c, err := m.NewCache(len(prompt)+n, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, m.Config.Vocab)
	if err := m.Forward(p, c, prompt, logits, &model.Options{Prefix: prefix}); err != nil {
		t.Fatal(err)
	}
	pl, err := NewPipeline(speculate.Target{Model: m, Cache: c, Pool: p, Prefix: prefix}, o)
	if err != nil {
		t.Fatal(err)
	}
	out := []int32{argmax(logits)}
	if err := pl.Start(append(slices.Clone(prompt), out[0])); err != nil {
		t.Fatal(err)
	}
	for len(out) < n {
		tok, err := pl.Next()
		if err != nil {
			t.Fatalf("token %d: %v", len(out), err)
		}
		out = append(out, tok)
	}
	if c.Len() < len(prompt)+n-1 {
		t.Errorf("after %d tokens the cache holds %d positions, want at least %d", n, c.Len(), len(prompt)+n-1)
	}
	// Tokens keep coming until the cache is full: the last one's successor has no room.
	st := pl.Stats()
	more := 0
	for {
		_, err := pl.Next()
		if err != nil {
			if !errors.Is(err, model.ErrContextFull) {
				t.Errorf("Next on a full cache: %v, want ErrContextFull", err)
			}
			break
		}
		if more++; more > 1 {
			t.Fatalf("Next returned %d tokens past a cache with room for one", more)
		}
	}
	return out, st
}

// TestPipelineMatchesGreedy checks that the pipelined form emits plain greedy
// decoding's tokens on parameter-shared models of several periods and weight types,
// with and without refinement by deeper exits, and that it actually speculates.
func TestPipelineMatchesGreedy(t *testing.T) {
	base := modeltest.Spec{Layers: 6, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 64, Context: 512}
	tests := []struct {
		weights gguf.Type
		layers  int
		period  int
	}{
		{gguf.TypeF16, 6, 2},
		{gguf.TypeF16, 6, 3},
		{gguf.TypeF32, 4, 1},
		{gguf.TypeQ8_0, 6, 2},
	}
	for i, tt := range tests {
		s := base
		s.Weights, s.Layers, s.Seed = tt.weights, tt.layers, uint64(i+1)
		m, _ := sharedModel(t, s, tt.period)
		prompt := modeltest.Tokens(20, s.Vocab, uint64(i))
		opts := []PipelineOptions{{}, {NoRefine: true}, {Vocab: prompt[:10]},
			{Drafter: speculate.NewNGram(nil, 1, 3), MaxDraft: 3}, {Drafter: speculate.NewNGram(prompt, 2, 4), NoRefine: true}}
		if tt.weights == gguf.TypeQ8_0 {
			opts = append(opts, PipelineOptions{Fast: true}) // Q8_0's batched products match one-vector ones
		}
		for _, threads := range []int{1, 3} {
			for _, o := range opts {
				t.Run(fmt.Sprintf("%v/%d-of-%d/threads=%d/norefine=%v/fast=%v/vocab=%d/draft=%v", tt.weights, tt.period, tt.layers, threads, o.NoRefine, o.Fast, len(o.Vocab), o.Drafter != nil), func(t *testing.T) {
					p := kernels.NewPool(threads)
					defer p.Close()
					want := plainGreedy(t, m, p, nil, prompt, 60)
					got, st := pipelined(t, m, p, nil, prompt, 60, o)
					if !slices.Equal(got, want) {
						t.Fatalf("pipelined %v\nplain     %v", got, want)
					}
					if st.Tokens != 59 || st.Launched == 0 || st.Accepted+st.DraftAccepted+st.Flushed > st.Launched+st.Drafted+1 {
						t.Errorf("stats %+v", st)
					}
					if o.Drafter != nil && st.Drafted == 0 {
						t.Errorf("the drafter drafted nothing: %+v", st)
					}
					t.Logf("%+v", st)
				})
			}
		}
	}
}

// TestPipelineNotShared checks that a model without shared blocks is refused.
func TestPipelineNotShared(t *testing.T) {
	m, _ := sharedModel(t, modeltest.Spec{Layers: 3}, 0)
	c, err := m.NewCache(8, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	p := kernels.NewPool(1)
	defer p.Close()
	if _, err := NewPipeline(speculate.Target{Model: m, Cache: c, Pool: p}, PipelineOptions{}); !errors.Is(err, ErrNotShared) {
		t.Errorf("NewPipeline on distinct layers: %v, want ErrNotShared", err)
	}
}

// TestBlockShare checks that the weights decide the sharing and that metadata claiming
// another one is refused.
func TestBlockShare(t *testing.T) {
	base := modeltest.Spec{Layers: 6}
	tests := []struct {
		name   string
		meta   any // nil: no key
		period int
		want   int
		err    bool
	}{
		{"metadata agrees", uint32(2), 2, 2, false},
		{"no metadata", nil, 2, 2, false},
		{"metadata claims no sharing", uint32(6), 2, 2, false},
		{"metadata claims another period", uint32(3), 2, 0, true},
		{"period not dividing the depth", uint32(4), 2, 0, true},
		{"period 0", uint32(0), 2, 0, true},
		{"not a number", "two", 2, 0, true},
		{"sharing the weights lack", uint32(2), 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			s.Meta = map[string]any{BlockShareKey: tt.meta}
			m, f := sharedModel(t, s, tt.period)
			got, err := BlockShare(f, m)
			if (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrBlockShare)) || got != tt.want {
				t.Errorf("BlockShare = %d, %v; want %d, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestPipelineNoFiniteLogit checks that a token whose logits are all NaN ends the
// pipeline with sample.ErrNoCandidates, as sampling such logits ends plain decoding,
// instead of emitting token 0: on a shared model whose final norm is NaN, through
// GreedyHead (F16 head) and through every logit (Q8_0 head, which has none).
func TestPipelineNoFiniteLogit(t *testing.T) {
	for _, weights := range []gguf.Type{gguf.TypeF16, gguf.TypeQ8_0} {
		t.Run(weights.String(), func(t *testing.T) {
			s := modeltest.Spec{Layers: 4, Context: 64, Weights: weights, Tokenizer: true, Seed: 9}
			s.Meta = map[string]any{BlockShareKey: uint32(2)}
			s.BlockShare = 2
			path := filepath.Join(t.TempDir(), "nan.gguf")
			if err := modeltest.Write(path, s); err != nil {
				t.Fatal(err)
			}
			setTensorNaN(t, path, "output_norm.weight")
			m, _, _ := testmodel.File(t, path)
			p := kernels.NewPool(2)
			defer p.Close()
			prompt := modeltest.Tokens(8, m.Config.Vocab, 1)
			c, err := m.NewCache(len(prompt)+20, model.CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(p, c, prompt, nil, nil); err != nil {
				t.Fatal(err)
			}
			pl, err := NewPipeline(speculate.Target{Model: m, Cache: c, Pool: p}, PipelineOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := pl.Start(append(slices.Clone(prompt), 3)); err != nil {
				t.Fatal(err)
			}
			tok, err := pl.Next()
			if !errors.Is(err, sample.ErrNoCandidates) {
				t.Fatalf("Next: token %d, error %v; want sample.ErrNoCandidates", tok, err)
			}
		})
	}
}

// setTensorNaN overwrites the F32 tensor name of the GGUF file at path with NaN.
func setTensorNaN(t *testing.T, path, name string) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, data, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != gguf.TypeF32 {
		t.Fatalf("%s is %v, not F32", name, info.Type)
	}
	at, n := f.DataOffset+int(info.Offset), len(data)
	f.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := at; i < at+n; i += 4 {
		binary.LittleEndian.PutUint32(raw[i:], math.Float32bits(float32(math.NaN())))
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}
