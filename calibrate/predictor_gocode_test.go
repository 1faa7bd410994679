package calibrate

import (
	"context"
	"slices"
	"testing"
	"time"

	"squeeze/runtime/decode"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/speculate"
)

// TestFitPredictorGocode fits the predictor on the first 4096 tokens of
// ../shared/eval/dev.txt with gocode-22m (full rank and rank 64) and gocode-shared, and
// logs each depth's acceptance on the last window (fitted map and raw exit), the chosen
// depth and the time it took.
func TestFitPredictorGocode(t *testing.T) {
	if testing.Short() {
		t.Skip("prefills 4096 tokens of gocode-22m: not in -short")
	}
	for _, name := range []string{"gocode-22m", "gocode-shared"} {
		t.Run(name, func(t *testing.T) { fitGocode(t, name) })
	}
}

func fitGocode(t *testing.T, name string) {
	m, _, tok := testmodel.Shared(t, name)
	text := testmodel.DevText(t)
	tokens := tok.Encode(text, true)[:4096]
	pool := kernels.NewPool(2)
	defer pool.Close()
	opts := []PredictorOptions{{}, {Rank: 64}}
	if name == "gocode-shared" {
		opts = opts[:1]
	}
	for _, o := range opts {
		fit, err := NewPredictorFit(&m.Config, pool, len(tokens), o)
		if err != nil {
			t.Fatal(err)
		}
		c, err := m.NewCache(len(tokens), model.CacheF16)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var observe time.Duration
		obs := func(s *model.LayerState) {
			t0 := time.Now()
			fit.Observe(s)
			observe += time.Since(t0)
		}
		for lo := 0; lo < len(tokens); lo += 512 {
			if err := m.Forward(pool, c, tokens[lo:min(len(tokens), lo+512)], nil, &model.Options{Observe: obs}); err != nil {
				t.Fatal(err)
			}
		}
		prefill := time.Since(start)
		start = time.Now()
		p, err := fit.Fit(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rank option %d: prefill %v (of which statistics %v), fit %v; chosen depth %d (rank %d)", o.Rank, prefill, observe, time.Since(start), p.Layer, p.Rank)
		for _, s := range p.Scores {
			sp, k := earlyexit.Speedup(&m.Config, s.Layer, s.Acceptance)
			t.Logf("  E=%d: acceptance %.3f (raw exit %.3f), modeled speed-up %.2f at k=%d", s.Layer, s.Acceptance, s.Raw, sp, k)
		}
	}
}

// BenchmarkEarlyDraftGocode measures early-layer drafts on gocode-22m at a context of
// C = 4096 tokens (the first of ../shared/eval/dev.txt): the predictor is fitted on the
// context's prefill, then each of 4 queries of 64 later tokens is appended to the context
// and 128 tokens are decoded greedily (decode.Engine, f16 cache): plainly, with early
// drafts under speculate's policy (over the whole vocabulary, or over the context's
// tokens), and with early drafts forced on every pass (to measure their acceptance even
// where the policy would not draft). Metrics: decode
// tokens/s (prefill excluded), the drafts' acceptance and tokens per verification pass.
func BenchmarkEarlyDraftGocode(b *testing.B) {
	m, _, tok := testmodel.Shared(b, "gocode-22m")
	text := testmodel.DevText(b)
	all := tok.Encode(text, true)
	const ctxLen, queryLen, n = 4096, 64, 128
	context0 := all[:ctxLen]
	pool := kernels.NewPool(2)
	defer pool.Close()
	fit, err := NewPredictorFit(&m.Config, pool, ctxLen, PredictorOptions{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := m.NewCache(ctxLen, model.CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	for lo := 0; lo < ctxLen; lo += 512 {
		if err := m.Forward(pool, c, context0[lo:lo+512], nil, &model.Options{Observe: fit.Observe}); err != nil {
			b.Fatal(err)
		}
	}
	pred, err := fit.Fit(context.Background(), m)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range pred.Scores {
		sp, k := earlyexit.Speedup(&m.Config, s.Layer, s.Acceptance)
		b.Logf("E=%d: acceptance %.3f (raw exit %.3f), modeled speed-up %.2f at k=%d", s.Layer, s.Acceptance, s.Raw, sp, k)
	}
	b.Logf("chosen E=%d", pred.Layer)
	if err := pred.Check(&m.Config); err != nil {
		b.Fatal(err)
	}
	var prompts [][]int32
	for i := range 4 {
		at := ctxLen + i*1500
		prompts = append(prompts, append(slices.Clone(context0), all[at:at+queryLen]...))
	}
	eng := &decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	for _, mode := range []string{"plain", "early", "early-vocab", "early-forced"} {
		b.Run(mode, func(b *testing.B) {
			var dur time.Duration
			tokens, drafted, accepted, verifications := 0, 0, 0, 0
			for b.Loop() {
				for _, prompt := range prompts {
					o := decode.Options{MaxTokens: n, Cache: model.CacheF16}
					switch mode {
					case "early":
						o.Speculate = speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{earlyexit.NewDrafter(pred)}, speculate.PolicyOptions{})
					case "early-vocab":
						d := earlyexit.NewDrafter(pred)
						d.Vocab = context0
						o.Speculate = speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{d}, speculate.PolicyOptions{})
					case "early-forced":
						o.Speculate = speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{earlyexit.NewDrafter(pred)}, speculate.PolicyOptions{MinGain: -1, MaxDraft: 2})
					}
					res, err := eng.GenerateTokens(context.Background(), prompt, o)
					if err != nil {
						b.Fatal(err)
					}
					dur += res.DecodeDuration
					tokens += len(res.Tokens) - 1
					st := res.Speculation
					drafted, accepted, verifications = drafted+st.Drafted, accepted+st.Accepted, verifications+st.Verifications
				}
			}
			b.ReportMetric(float64(tokens)/dur.Seconds(), "tokens/s")
			if drafted > 0 {
				b.ReportMetric(float64(accepted)/float64(drafted), "acceptance")
				b.ReportMetric(float64(accepted+verifications)/float64(verifications), "tokens/verification")
			}
		})
	}
}

// TestEarlyDraftGocodeIdentity checks on gocode-22m that greedy decoding with early
// drafts from a predictor fitted on a 1024-token context, drafted on every pass and
// verified by speculate's batched pass, gives plain greedy decoding's tokens.
func TestEarlyDraftGocodeIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes gocode-22m: not in -short")
	}
	m, _, tok := testmodel.Shared(t, "gocode-22m")
	text := testmodel.DevText(t)
	all := tok.Encode(text, true)
	const ctxLen = 1024
	pool := kernels.NewPool(2)
	defer pool.Close()
	fit, err := NewPredictorFit(&m.Config, pool, ctxLen, PredictorOptions{Layers: []int{2, 5}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewCache(ctxLen, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(pool, c, all[:ctxLen], nil, &model.Options{Observe: fit.Observe}); err != nil {
		t.Fatal(err)
	}
	pred, err := fit.Fit(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	eng := &decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	var drafted, accepted int
	for i := range 3 {
		at := ctxLen + 2000*i
		prompt := append(slices.Clone(all[:ctxLen]), all[at:at+32]...)
		plain, err := eng.GenerateTokens(context.Background(), prompt, decode.Options{MaxTokens: 64})
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.GenerateTokens(context.Background(), prompt, decode.Options{MaxTokens: 64,
			Speculate: speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{earlyexit.NewDrafter(pred)}, speculate.PolicyOptions{MinGain: -1, Probe: 1})})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Tokens, plain.Tokens) {
			t.Fatalf("prompt %d: early drafts changed the output\n got %v\nwant %v", i, res.Tokens, plain.Tokens)
		}
		drafted += res.Speculation.Drafted
		accepted += res.Speculation.Accepted
	}
	if drafted == 0 {
		t.Fatal("nothing was drafted")
	}
	t.Logf("E=%d: %d drafted, %d accepted", pred.Layer, drafted, accepted)
}
