package kvquant

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/decode"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/sparse"
	"squeeze/runtime/speculate"
	"squeeze/runtime/tokenizer"
)

// appendSpec is the synthetic model of the append tests: 2 layers, 4 query heads sharing
// 2 KV heads of 16 dimensions, with a tokenizer for the generation tests.
var appendSpec = modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Vocab: 300, Context: 1024, Tokenizer: true, Seed: 3}

// appendFixture is a quantized context of S positions for the append tests' model, and
// the value datatypes of its layers.
func appendFixture(t testing.TB, S int) (*model.Model, *sparse.Context, []Datatype) {
	t.Helper()
	m, _, _ := testmodel.Spec(t, appendSpec)
	nf3, _ := NormalFloat(3)
	q, _, _ := quantizedContext(t, rand.New(rand.NewPCG(4, 5)), m, S, 1, 16, 9, nf3, nf3)
	return m, q, []Datatype{nf3, nf3}
}

// prefilled returns a session on c at budget and an f16 cache of 256 positions holding
// the given tokens after it.
func prefilled(t testing.TB, m *model.Model, c *sparse.Context, pool *kernels.Pool, budget float64, tokens []int32) (*sparse.Session, *model.Cache) {
	t.Helper()
	s, err := sparse.NewSession(c, m, pool, budget)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := m.NewCache(256, model.CacheF16)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(pool, cache, tokens, nil, &model.Options{Prefix: s}); err != nil {
		t.Fatal(err)
	}
	return s, cache
}

// TestAppenderAttention: after two spills, a session attends to its tail as a reference
// session does to the tail's keys and its values dequantized to f32 rows, dense and
// sparse, for one token and a batch; each moved block keeps the outliers the
// context's rule gives a block of its size, the values round-trip within the
// datatype's bound, and the cache keeps the unmoved tokens at their positions.
func TestAppenderAttention(t *testing.T) {
	const S, T = 150, 70
	m, qc, types := appendFixture(t, S)
	cfg := &m.Config
	hd := cfg.HeadDim
	pool := kernels.NewPool(2)
	defer pool.Close()
	tokens := modeltest.Tokens(T, cfg.Vocab, 8)
	for _, budget := range []float64{1, 0.5} {
		s, c := prefilled(t, m, qc, pool, budget, tokens)
		orig := make([][]float32, cfg.Layers*cfg.KVHeads)
		for l := range cfg.Layers {
			for h := range cfg.KVHeads {
				v, err := c.Values(l, h, 0, T, make([]float32, T*hd))
				if err != nil {
					t.Fatal(err)
				}
				orig[l*cfg.KVHeads+h] = v
			}
		}
		kept, _ := c.Keys(1, 1, 60, T, make([]float32, 10*hd))
		a, err := NewAppender(s, m, types, DefaultOutliers)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{40, 20} {
			if err := a.Spill(c, n); err != nil {
				t.Fatal(err)
			}
		}
		if a.Tokens() != 60 || s.Len() != S+60 || c.Len() != T-60 {
			t.Fatalf("tail %d, session %d, cache %d positions", a.Tokens(), s.Len(), c.Len())
		}
		if got, _ := c.Keys(1, 1, 0, 10, make([]float32, 10*hd)); !slices.Equal(got, kept) {
			t.Fatal("the cache's unmoved keys changed")
		}
		// The reference: the same keys, the values decoded to f32 rows.
		ref, err := sparse.NewSession(qc, m, pool, budget)
		if err != nil {
			t.Fatal(err)
		}
		at := 0
		for b, n := range []int{40, 20} {
			refV := make([][]sparse.Rows, cfg.Layers)
			keys := make([][]sparse.Rows, cfg.Layers)
			for l := range cfg.Layers {
				for h := range cfg.KVHeads {
					r := a.values[l][h][b].(*Rows)
					dec := make([]float32, n*hd)
					r.Dequantize(dec, 0, n)
					refV[l] = append(refV[l], &f32Rows{hd, dec})
					keys[l] = append(keys[l], a.keys[l][h][b])
					if want := 2 * int(math.Round(DefaultOutliers/2*float64(n*hd))); r.Outliers() != want {
						t.Fatalf("layer %d head %d block %d: %d outliers, want %d", l, h, b, r.Outliers(), want)
					}
					bound := float64(types[l].Bound())
					for i := range n {
						x := orig[l*cfg.KVHeads+h][(at+i)*hd : (at+i+1)*hd]
						half := float64(kernels.F16ToF32(r.Token[2*i+1])) // the row's own range
						if lo, hi := slices.Min(x), slices.Max(x); half > float64(hi-lo) {
							t.Fatalf("layer %d head %d row %d: half-width %v for values from %v to %v", l, h, at+i, half, lo, hi)
						}
						for d := range hd {
							if e := math.Abs(float64(dec[i*hd+d] - x[d])); e > bound*half*(1+1e-3) {
								t.Fatalf("layer %d head %d row %d dim %d: %v decodes to %v (row %v)", l, h, at+i, d, x[d], dec[i*hd+d], x)
							}
						}
					}
				}
			}
			if err := ref.AppendTail(keys, refV); err != nil {
				t.Fatal(err)
			}
			at += n
		}
		rng := rand.New(rand.NewPCG(9, 10))
		for _, n := range []int{1, 6} {
			for layer := range cfg.Layers {
				q := randVec(rng, n*cfg.QDim())
				kernels.Scale(q, 0.1)
				out, lse := make([]float32, n*cfg.QDim()), make([]float32, n*cfg.Heads)
				rout, rlse := make([]float32, n*cfg.QDim()), make([]float32, n*cfg.Heads)
				s.Attend(layer, q, n, out, lse)
				ref.Attend(layer, q, n, rout, rlse)
				for i := range out {
					if d := math.Abs(float64(out[i] - rout[i])); d > 1e-4*(1+math.Abs(float64(rout[i]))) {
						t.Fatalf("budget %v n %d layer %d: output %d: %v, reference %v", budget, n, layer, i, out[i], rout[i])
					}
				}
				for i := range lse {
					if d := math.Abs(float64(lse[i] - rlse[i])); d > 1e-4*(1+math.Abs(float64(rlse[i]))) {
						t.Fatalf("budget %v n %d layer %d: lse %d: %v, reference %v", budget, n, layer, i, lse[i], rlse[i])
					}
				}
			}
		}
		if a.Bytes() >= a.F16Bytes() || a.F16Bytes() != 60*cfg.Layers*cfg.KVHeads*hd*4 {
			t.Fatalf("tail of %d bytes, %d in f16", a.Bytes(), a.F16Bytes())
		}
	}
}

// TestAppenderErrors: bad arguments are refused with ErrInvalid, and a refused spill
// changes neither the cache nor the session.
func TestAppenderErrors(t *testing.T) {
	m, qc, types := appendFixture(t, 60)
	pool := kernels.NewPool(1)
	defer pool.Close()
	s, c := prefilled(t, m, qc, pool, 1, modeltest.Tokens(20, m.Config.Vocab, 2))
	for name, fn := range map[string]func() error{
		"types":    func() error { _, err := NewAppender(s, m, types[:1], 0.01); return err },
		"outliers": func() error { _, err := NewAppender(s, m, types, 0.5); return err },
		"nil":      func() error { _, err := NewAppender(nil, m, types, 0.01); return err },
	} {
		if err := fn(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	a, err := NewAppender(s, m, types, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := testmodel.Spec(t, modeltest.Spec{Layers: 3, Dim: 64, Heads: 4, KVHeads: 2, Vocab: 300, Tokenizer: true})
	oc, _ := other.NewCache(8, model.CacheF16)
	for name, fn := range map[string]func() error{
		"too many": func() error { return a.Spill(c, 21) },
		"negative": func() error { return a.Spill(c, -1) },
		"model":    func() error { return a.Spill(oc, 0) },
	} {
		if err := fn(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		if c.Len() != 20 || s.Len() != 60 || a.Tokens() != 0 {
			t.Fatalf("%s: a refused spill left cache %d, session %d, tail %d", name, c.Len(), s.Len(), a.Tokens())
		}
	}
	if err := a.Spill(c, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAppender(s, m, types, 0.01); !errors.Is(err, ErrInvalid) {
		t.Errorf("a second appender on a session with a tail: %v", err)
	}
}

// TestAppenderForward: moving a prompt's first tokens to the tail keeps the logits of the
// tokens that follow: up to float rounding with half-precision values (nothing is
// quantized, only where the tokens are attended changes), within the quantization's
// effect with quantized values (and not exactly: the values were quantized).
func TestAppenderForward(t *testing.T) {
	m, qc, types := appendFixture(t, 120)
	cfg := &m.Config
	pool := kernels.NewPool(2)
	defer pool.Close()
	prompt := modeltest.Tokens(50, cfg.Vocab, 6)
	next := modeltest.Tokens(8, cfg.Vocab, 7)
	for _, tc := range []struct {
		name  string
		types []Datatype
		tol   float64 // of max|Δlogit| / max|logit|
	}{
		{"f16", nil, 1e-4},
		{"nf3", types, 0.05},
	} {
		s, c := prefilled(t, m, qc, pool, 1, prompt)
		rs, rc := prefilled(t, m, qc, pool, 1, prompt)
		a, err := NewAppender(s, m, tc.types, DefaultOutliers)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Spill(c, 30); err != nil {
			t.Fatal(err)
		}
		var worst float64
		for i, id := range next {
			got, want := make([]float32, cfg.Vocab), make([]float32, cfg.Vocab)
			if err := m.Forward(pool, c, []int32{id}, got, &model.Options{Prefix: s}); err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(pool, rc, []int32{id}, want, &model.Options{Prefix: rs}); err != nil {
				t.Fatal(err)
			}
			var d, top float64
			for j := range got {
				d = max(d, math.Abs(float64(got[j]-want[j])))
				top = max(top, math.Abs(float64(want[j])))
			}
			if d > tc.tol*top {
				t.Fatalf("%s: token %d: logits differ by %v (max |logit| %v)", tc.name, i, d, top)
			}
			worst = max(worst, d/top)
		}
		if tc.types != nil && worst == 0 {
			t.Fatalf("%s: quantized values changed no logit", tc.name)
		}
		if c.Len()+a.Tokens() != rc.Len() || s.Len() != rs.Len()+30 {
			t.Fatalf("%s: positions: cache %d + tail %d, reference %d", tc.name, c.Len(), a.Tokens(), rc.Len())
		}
	}
}

// spillLog records where each spill falls: the position of the token that runs next.
type spillLog struct {
	a   *Appender
	s   *sparse.Session
	log []int
}

func (r *spillLog) Spill(c *model.Cache, n int) error {
	r.log = append(r.log, r.s.Len()+c.Len())
	return r.a.Spill(c, n)
}

// TestAppenderGreedyIdentity: a long greedy generation after a quantized context, with
// its values quantized on append every few tokens, gives the same tokens and moves the
// same blocks at the same tokens when decoded speculatively (drafts verified in passes
// that cross the moves) as when decoded one token at a time; the tail saves memory. With
// f16 values, the moves leave greedy decoding's tokens as they are without moves. Dense
// and squeezed (a lookup per token, in verification passes too).
func TestAppenderGreedyIdentity(t *testing.T) {
	m, qc, types := appendFixture(t, 100)
	_, _, tok := testmodel.Spec(t, appendSpec)
	pool := kernels.NewPool(2)
	defer pool.Close()
	for _, budget := range []float64{1, 0.5} {
		t.Run(fmt.Sprintf("budget=%v", budget), func(t *testing.T) {
			greedyIdentity(t, m, tok, qc, pool, budget, types)
		})
	}
}

// greedyIdentity is TestAppenderGreedyIdentity at one budget.
func greedyIdentity(t *testing.T, m *model.Model, tok *tokenizer.Tokenizer, qc *sparse.Context, pool *kernels.Pool, budget float64, types []Datatype) {
	e := decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	prompt := tok.Encode("the quick brown fox", false)
	const after, block = 16, 8
	run := func(policy *speculate.Policy, types []Datatype) (decode.Result, *spillLog) {
		s, err := sparse.NewSession(qc, m, pool, budget)
		if err != nil {
			t.Fatal(err)
		}
		a, err := NewAppender(s, m, types, DefaultOutliers)
		if err != nil {
			t.Fatal(err)
		}
		rec := &spillLog{a: a, s: s}
		res, err := e.GenerateTokens(context.Background(), prompt, decode.Options{
			MaxTokens: 300, Cache: model.CacheF16, Prefix: s, Speculate: policy,
			Spill: &decode.Spill{To: rec, After: after, Block: block},
		})
		if err != nil {
			t.Fatal(err)
		}
		if a.Tokens() != len(rec.log)*block || (a.Bytes() >= a.F16Bytes()) == a.Quantized() {
			t.Fatalf("tail of %d tokens after %d spills: %d bytes, %d in f16", a.Tokens(), len(rec.log), a.Bytes(), a.F16Bytes())
		}
		return res, rec
	}
	plain, plog := run(nil, types)
	if len(plog.log) < 4 {
		t.Fatalf("%d tokens (%s), %d spills: too short a test", len(plain.Tokens), plain.StopReason, len(plog.log))
	}
	for i, p := range plog.log {
		if want := len(qc.Tokens) + after + block + i*block; p != want {
			t.Fatalf("spill %d before the token at %d, want %d", i, p, want)
		}
	}
	ngram := speculate.NewNGram(append(slices.Clone(prompt), plain.Tokens...), 0, 0)
	spec, slog := run(speculate.NewPolicy(speculate.ModeNGram, []speculate.Drafter{ngram}, speculate.PolicyOptions{}), types)
	if !slices.Equal(spec.Tokens, plain.Tokens) {
		t.Fatalf("speculative tokens differ from plain greedy's:\n%v\n%v", spec.Tokens, plain.Tokens)
	}
	if !slices.Equal(slog.log, plog.log) {
		t.Fatalf("speculative decoding spilled before tokens %v, plain %v", slog.log, plog.log)
	}
	if st := spec.Speculation; st.Verifications == 0 || st.Accepted < len(plain.Tokens)/2 {
		t.Fatalf("speculation: %+v; the test needs long accepted drafts", st)
	}
	// With the values kept in f16, moving tokens changes nothing but where they are
	// attended: greedy decoding's tokens stay those of a generation without moves.
	f16, _ := run(nil, nil)
	s, err := sparse.NewSession(qc, m, pool, budget)
	if err != nil {
		t.Fatal(err)
	}
	unmoved, err := e.GenerateTokens(context.Background(), prompt, decode.Options{MaxTokens: 300, Cache: model.CacheF16, Prefix: s})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f16.Tokens, unmoved.Tokens) {
		t.Fatalf("f16 tail: tokens differ from a generation without moves:\n%v\n%v", f16.Tokens, unmoved.Tokens)
	}
}

// BenchmarkAppenderSpill moves 256 tokens of a model of gocode-22m's attention shape (10
// layers, 2 KV heads of 64) out of a cache: what a move costs, once per 256 decoded
// tokens.
func BenchmarkAppenderSpill(b *testing.B) {
	spec := modeltest.Spec{Layers: 10, Dim: 384, FFN: 256, Heads: 6, KVHeads: 2, Vocab: 300, Context: 2048, Tokenizer: true, Seed: 1}
	m, _, _ := testmodel.Spec(b, spec)
	nf3, _ := NormalFloat(3)
	qc, _, _ := quantizedContext(b, rand.New(rand.NewPCG(1, 2)), m, 64, 1, 8, 8, nf3, nf3)
	types := make([]Datatype, m.Config.Layers)
	for l := range types {
		types[l] = nf3
	}
	tokens := modeltest.Tokens(256, m.Config.Vocab, 1)
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			pool := kernels.NewPool(threads)
			defer pool.Close()
			for range b.N {
				b.StopTimer()
				s, c := prefilled(b, m, qc, pool, 1, tokens)
				a, err := NewAppender(s, m, types, DefaultOutliers)
				if err != nil {
					b.Fatal(err)
				}
				a.Pool = pool
				b.StartTimer()
				if err := a.Spill(c, 256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
