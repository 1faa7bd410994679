package calibrate

import (
	"context"
	"os"
	"testing"
	"time"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// TestFitPredictorGocode fits the predictor on the first 4096 tokens of
// ../shared/eval/dev.txt with gocode-22m and logs each depth's acceptance on the last
// window (fitted map and raw exit), the chosen depth and the time it took.
func TestFitPredictorGocode(t *testing.T) {
	if testing.Short() {
		t.Skip("prefills 4096 tokens of gocode-22m: not in -short")
	}
	f, err := gguf.Open(testfiles.Shared(t, "models", "gocode-22m", "gocode-22m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(testfiles.Shared(t, "eval", "dev.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := tok.Encode(string(text), true)[:4096]
	pool := kernels.NewPool(2)
	defer pool.Close()
	for _, o := range []PredictorOptions{{}, {Rank: 64}} {
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
			sp, k := speedupOf(&m.Config, s.Layer, s.Acceptance)
			t.Logf("  E=%d: acceptance %.3f (raw exit %.3f), modeled speed-up %.2f at k=%d", s.Layer, s.Acceptance, s.Raw, sp, k)
		}
	}
}
