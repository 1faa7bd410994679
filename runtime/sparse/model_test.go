package sparse

import (
	"context"
	"math"
	"slices"
	"testing"

	"squeeze/runtime/decode"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/tokenizer"
)

// prefilledContext prefills tokens in a cache of m and builds a Context from its keys and
// values: the first 4 and last 8 positions always attended, the rest in clusters of 8
// consecutive positions under parents of 4.
func prefilledContext(t *testing.T, m *model.Model, pool *kernels.Pool, tokens []int32) *Context {
	t.Helper()
	cfg := &m.Config
	S := len(tokens)
	c, err := m.NewCache(S, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(pool, c, tokens, nil, nil); err != nil {
		t.Fatal(err)
	}
	get := func(keys bool) rowsFunc {
		return func(l, h int) []float32 {
			dst := make([]float32, S*cfg.HeadDim)
			var err error
			if keys {
				_, err = c.Keys(l, h, 0, S, dst)
			} else {
				_, err = c.Values(l, h, 0, S, dst)
			}
			if err != nil {
				t.Fatal(err)
			}
			return dst
		}
	}
	var always []int32
	for p := range S {
		if p < 4 || p >= S-8 {
			always = append(always, int32(p))
		}
	}
	ctx := synthContext(t, cfg.Layers, cfg.KVHeads, cfg.HeadDim, S, get(true), get(false), always, 8, 4)
	ctx.Tokens = slices.Clone(tokens)
	n := ctx.Layers[0][0].Tree.Len()
	tau := float32(math.Log(1 / float64(n)))
	ctx.Thresholds = []Threshold{{Budget: 0.5, Fraction: 0.5, LogTau: []float32{tau, tau}}}
	return ctx
}

// relDiff is max|a-b| / max|b|.
func relDiff(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
		m = max(m, math.Abs(float64(b[i])))
	}
	return d / m
}

// TestSessionDenseLogits is the acceptance test: with budget 1 a session gives the logits
// of the context and the query in one cache (f16 storage on both sides), for a batched
// query and for decoded tokens; with a sparse budget the logits stay close but differ.
func TestSessionDenseLogits(t *testing.T) {
	m, err := model.Load(modeltest.Open(t, modeltest.Spec{Layers: 2, Dim: 96, Heads: 6, KVHeads: 2, Vocab: 300, Context: 1024, Seed: 4}))
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.Config.Vocab
	for _, threads := range []int{1, 3} {
		pool := kernels.NewPool(threads)
		tokens := randomTokens(200, vocab, 1)
		query := randomTokens(10, vocab, 2)
		ctx := prefilledContext(t, m, pool, tokens)
		for _, budget := range []float64{1, 0.5} {
			s, err := NewSession(ctx, m, pool, budget)
			if err != nil {
				t.Fatal(err)
			}
			one, _ := m.NewCache(300, model.CacheF16)
			if err := m.Forward(pool, one, tokens, nil, nil); err != nil {
				t.Fatal(err)
			}
			own, _ := m.NewCache(64, model.CacheF16)
			want := make([]float32, 6*vocab)
			got := make([]float32, 6*vocab)
			worst := 0.0
			for _, part := range [][]int32{query[:6], query[6:7], query[7:8], query[8:9], query[9:]} {
				n := len(part)
				if err := m.Forward(pool, one, part, want[:n*vocab], &model.Options{AllLogits: true}); err != nil {
					t.Fatal(err)
				}
				if err := m.Forward(pool, own, part, got[:n*vocab], &model.Options{AllLogits: true, Prefix: s}); err != nil {
					t.Fatal(err)
				}
				worst = max(worst, relDiff(got[:n*vocab], want[:n*vocab]))
			}
			st := s.Stats()
			if budget >= 1 {
				if worst > 1e-4 {
					t.Errorf("threads %d, dense: logits differ by %g (relative)", threads, worst)
				}
				if st.RealizedBudget() != 1 {
					t.Errorf("dense realized budget %v", st.RealizedBudget())
				}
			} else if worst == 0 || st.KeysFraction() >= 1 {
				t.Errorf("threads %d, budget %g: difference %g, keys fraction %v: nothing was skipped", threads, budget, worst, st.KeysFraction())
			}
			// 5 passes x layers x KV heads lookups.
			if want := 5 * m.Config.Layers * m.Config.KVHeads; st.Lookups != want {
				t.Errorf("%d lookups, want %d", st.Lookups, want)
			}
		}
		pool.Close()
	}
}

func randomTokens(n, vocab int, seed uint64) []int32 {
	out := make([]int32, n)
	x := seed*2654435761 + 1
	for i := range out {
		x = x*6364136223846793005 + 1442695040888963407
		out[i] = int32((x >> 33) % uint64(vocab))
	}
	return out
}

// TestSessionGenerate checks that decode.Engine with a dense Session as its Prefix
// generates what it generates from the context and the query as one prompt (greedy).
func TestSessionGenerate(t *testing.T) {
	f := modeltest.Open(t, modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Context: 1024, Tokenizer: true, Seed: 3})
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(2)
	defer pool.Close()
	tokens := randomTokens(150, m.Config.Vocab, 5)
	query := randomTokens(7, m.Config.Vocab, 6)
	ctx := prefilledContext(t, m, pool, tokens)
	s, err := NewSession(ctx, m, pool, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	want, err := e.GenerateTokens(context.Background(), append(slices.Clone(tokens), query...), decode.Options{MaxTokens: 12, Cache: model.CacheF16})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.GenerateTokens(context.Background(), query, decode.Options{MaxTokens: 12, Cache: model.CacheF16, Prefix: s})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text {
		t.Fatalf("with the session: %v %q\nin one prompt: %v %q", got.Tokens, got.Text, want.Tokens, want.Text)
	}
	if len(got.Tokens) == 0 {
		t.Fatal("nothing generated")
	}
}
