package earlyexit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/decode"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/speculate"
)

// randomPredictor returns a checked predictor of rank r with small random weights.
func randomPredictor(t testing.TB, e, dim, r int, seed uint64) *Predictor {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	vec := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * (2*rng.Float32() - 1)
		}
		return v
	}
	p := &Predictor{Layer: e, Dim: dim, Rank: r, Bias: vec(dim, 0.1)}
	switch {
	case r == dim:
		p.Full = vec(dim*dim, 0.05)
	case r > 0:
		p.A, p.B = vec(r*dim, 0.1), vec(dim*r, 0.1)
	}
	if err := p.Check(nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPredictorApply compares Apply with a float64 evaluation of its formula.
func TestPredictorApply(t *testing.T) {
	const dim = 48
	pool := kernels.NewPool(2)
	defer pool.Close()
	for _, r := range []int{0, 5, dim} {
		t.Run(fmt.Sprintf("rank=%d", r), func(t *testing.T) {
			p := randomPredictor(t, 2, dim, r, uint64(r))
			h := randomPredictor(t, 1, dim, 0, 99).Bias // any vector
			want := make([]float64, dim)
			for i := range dim {
				want[i] = float64(h[i]) + float64(p.Bias[i])
				switch {
				case r == dim:
					for j := range dim {
						want[i] += float64(p.Full[i*dim+j]) * float64(h[j])
					}
				case r > 0:
					for k := range r {
						var a float64
						for j := range dim {
							a += float64(p.A[k*dim+j]) * float64(h[j])
						}
						want[i] += float64(p.B[i*r+k]) * a
					}
				}
			}
			got := make([]float32, dim)
			p.Apply(pool, got, h, make([]float32, r))
			for i := range dim {
				if math.Abs(float64(got[i])-want[i]) > 1e-5*(1+math.Abs(want[i])) {
					t.Fatalf("element %d: %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestPredictorCheck checks that malformed predictors are refused with ErrPredictor.
func TestPredictorCheck(t *testing.T) {
	cfg := &model.Config{Layers: 4, Dim: 8}
	ok := func() *Predictor { return randomPredictor(t, 2, 8, 3, 1) }
	tests := []struct {
		name string
		edit func(p *Predictor)
	}{
		{"zero dimension", func(p *Predictor) { p.Dim = 0 }},
		{"rank above the dimension", func(p *Predictor) { p.Rank = 9 }},
		{"negative rank", func(p *Predictor) { p.Rank = -1 }},
		{"layer 0", func(p *Predictor) { p.Layer = 0 }},
		{"layer past the model", func(p *Predictor) { p.Layer = 4 }},
		{"short bias", func(p *Predictor) { p.Bias = p.Bias[:7] }},
		{"short factor", func(p *Predictor) { p.A = p.A[:5] }},
		{"full matrix with a low rank", func(p *Predictor) { p.Full = make([]float32, 64) }},
		{"full rank without the matrix", func(p *Predictor) { p.Rank = 8 }},
		{"NaN", func(p *Predictor) { p.B[2] = float32(math.NaN()) }},
		{"infinity", func(p *Predictor) { p.Bias[0] = float32(math.Inf(1)) }},
		{"another width", func(p *Predictor) { *p = Predictor{Layer: 1, Dim: 16, Bias: make([]float32, 16)} }},
	}
	if err := ok().Check(cfg); err != nil {
		t.Fatalf("a good predictor: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			tt.edit(p)
			if err := p.Check(cfg); !errors.Is(err, ErrPredictor) {
				t.Errorf("Check: %v, want ErrPredictor", err)
			}
		})
	}
}

// draftSpec is a small model with a tokenizer, for decode.Engine.
var draftSpec = modeltest.Spec{Layers: 4, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 300, Context: 512, Weights: gguf.TypeF16, Tokenizer: true}

// TestDrafterMatchesGreedy checks that early drafts verified by speculative decoding
// (decode.Engine, speculation mode early) give plain greedy decoding's tokens, for raw
// exits and fitted maps of several ranks, and that Draft leaves the cache's length alone.
func TestDrafterMatchesGreedy(t *testing.T) {
	s := draftSpec
	s.Seed = 5
	m, _, tok := testmodel.Spec(t, s)
	pool := kernels.NewPool(2)
	defer pool.Close()
	eng := &decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	prompt := modeltest.Tokens(40, s.Vocab, 11)
	plain, err := eng.GenerateTokens(context.Background(), prompt, decode.Options{MaxTokens: 80})
	if err != nil {
		t.Fatal(err)
	}
	preds := []*Predictor{Identity(1, s.Dim), Identity(3, s.Dim), randomPredictor(t, 2, s.Dim, 6, 2), randomPredictor(t, 2, s.Dim, s.Dim, 3), Identity(2, s.Dim)}
	for i, p := range preds {
		vocab := i == len(preds)-1 // drafts over the prompt's tokens
		t.Run(fmt.Sprintf("E=%d/rank=%d/vocab=%v", p.Layer, p.Rank, vocab), func(t *testing.T) {
			if err := p.Check(&m.Config); err != nil {
				t.Fatal(err)
			}
			d := NewDrafter(p)
			if vocab {
				d.Vocab = prompt[:20]
			}
			res, err := eng.GenerateTokens(context.Background(), prompt, decode.Options{
				MaxTokens: 80,
				Speculate: speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{d}, speculate.PolicyOptions{MinGain: -1, Probe: 1}),
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Tokens, plain.Tokens) {
				t.Fatalf("speculative %v\nplain       %v", res.Tokens, plain.Tokens)
			}
			if res.Speculation.Verifications == 0 {
				t.Errorf("no draft was verified: %+v", res.Speculation)
			}

			// Draft on its own: the cache keeps its length.
			c, err := m.NewCache(64, model.CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(pool, c, prompt[:30], nil, nil); err != nil {
				t.Fatal(err)
			}
			d.Reset(&speculate.Target{Model: m, Cache: c, Pool: pool}, prompt[:31])
			draft := d.Draft(nil, prompt[:31], 5)
			if len(draft) != 5 || c.Len() != 30 {
				t.Errorf("Draft gave %d tokens (want 5) and left Len %d (want 30)", len(draft), c.Len())
			}
			if vocab {
				for _, tok := range draft {
					if !slices.Contains(prompt[:31], tok) {
						t.Errorf("drafted %d, outside the vocabulary and the sequence", tok)
					}
				}
			}
		})
	}
}
