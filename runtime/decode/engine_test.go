package decode

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// demoEngine loads the small default model from testdata, or skips the test.
func demoEngine(t *testing.T) *Engine {
	t.Helper()
	path := filepath.Join(testfiles.Root(t), "testdata", "gocode-demo.gguf")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("demo model absent (%v): it is testdata/gocode-demo.gguf, a copy of ../shared/models/gocode-demo/gocode-demo.gguf", err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(2)
	t.Cleanup(pool.Close)
	return &Engine{Model: m, Tokenizer: tok, Pool: pool}
}

// manualGreedy decodes n tokens by hand: one Forward of the prompt, then argmax and feed
// back, without any of Generate's machinery.
func manualGreedy(t *testing.T, e *Engine, prompt []int32, n int, kind model.CacheType) []int32 {
	t.Helper()
	c, err := e.Model.NewCache(0, kind)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, e.Model.Config.Vocab)
	if err := e.Model.Forward(e.Pool, c, prompt, logits, nil); err != nil {
		t.Fatal(err)
	}
	var out []int32
	for len(out) < n {
		best := 0
		for i, l := range logits {
			if l > logits[best] {
				best = i
			}
		}
		out = append(out, int32(best))
		if err := e.Model.Forward(e.Pool, c, []int32{int32(best)}, logits, nil); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestEngineGreedyMatchesArgmax(t *testing.T) {
	e := demoEngine(t)
	for _, kind := range []model.CacheType{model.CacheF32, model.CacheF16} {
		t.Run(kind.String(), func(t *testing.T) {
			prompt := e.Tokenizer.Encode("package main\n\nimport (\n", true)
			var streamed strings.Builder
			res, err := e.GenerateTokens(context.Background(), prompt, Options{
				MaxTokens: 24,
				Cache:     kind,
				OnText:    func(s string) error { streamed.WriteString(s); return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			want := manualGreedy(t, e, prompt, len(res.Tokens), kind)
			if !slices.Equal(res.Tokens, want) {
				t.Fatalf("Generate %v\nargmax   %v", res.Tokens, want)
			}
			if res.StopReason == StopMaxTokens && len(res.Tokens) != 24 {
				t.Fatalf("max_tokens after %d tokens", len(res.Tokens))
			}
			if got := e.Tokenizer.Decode(res.Tokens); res.StopReason != StopEOG && got != res.Text {
				t.Fatalf("Result.Text %q, Decode(tokens) %q", res.Text, got)
			}
			if streamed.String() != res.Text {
				t.Fatalf("streamed %q, Result.Text %q", streamed.String(), res.Text)
			}
			if res.PromptTokens != len(prompt) || res.PrefillTokensPerSecond() <= 0 || res.DecodeTokensPerSecond() <= 0 {
				t.Fatalf("prompt tokens %d, rates %v %v", res.PromptTokens, res.PrefillTokensPerSecond(), res.DecodeTokensPerSecond())
			}
			t.Logf("%q: %.0f prefill tok/s, %.0f decode tok/s", res.Text, res.PrefillTokensPerSecond(), res.DecodeTokensPerSecond())
		})
	}
}

// TestEngineReferenceGreedy continues the reference prompt and compares with the 32
// greedy tokens of the independent fp32 forward pass in
// ../shared/models/gocode-demo/reference.json.
func TestEngineReferenceGreedy(t *testing.T) {
	e := demoEngine(t)
	path := filepath.Join(testfiles.Root(t), "..", "shared", "models", "gocode-demo", "reference.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("reference absent: %v", err)
	}
	var ref struct {
		Cases []struct {
			Tokens []int32 `json:"tokens"`
			Greedy []int32 `json:"greedy_next32"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) == 0 {
		t.Fatal("reference.json has no cases")
	}
	c := ref.Cases[0]
	res, err := e.GenerateTokens(context.Background(), c.Tokens, Options{MaxTokens: len(c.Greedy)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, c.Greedy) {
		t.Fatalf("greedy tokens\n got %v\nwant %v", res.Tokens, c.Greedy)
	}
}

func TestEngineStopStringAndCancel(t *testing.T) {
	e := demoEngine(t)
	res, err := e.Generate(context.Background(), "package main\n\nimport", Options{MaxTokens: 64, Stop: []string{"\n"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopString || strings.Contains(res.Text, "\n") {
		t.Fatalf("reason %q, text %q: want a stop at the first newline", res.StopReason, res.Text)
	}
	full := e.Tokenizer.Decode(res.Tokens)
	if !strings.HasPrefix(full, res.Text+"\n") {
		t.Fatalf("text %q is not the tokens' text %q cut before the newline", res.Text, full)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pieces := 0
	res, err = e.Generate(ctx, "package main\n", Options{OnText: func(string) error {
		if pieces++; pieces == 2 {
			cancel()
		}
		return nil
	}})
	if !errors.Is(err, context.Canceled) || res.StopReason != StopCancelled {
		t.Fatalf("err %v, reason %q; want cancelled", err, res.StopReason)
	}
	if len(res.Tokens) > 4 || res.Text == "" {
		t.Fatalf("after cancelling at the second piece: %d tokens, text %q", len(res.Tokens), res.Text)
	}
}

// BenchmarkGenerate measures a whole greedy generation on the demo model with an f16
// cache and all cores: a 64-token prompt, then up to 64 generated tokens (greedy output
// is deterministic, so every iteration does the same work).
func BenchmarkGenerate(b *testing.B) {
	path := filepath.Join(testfiles.Root(b), "testdata", "gocode-demo.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		b.Skipf("demo model absent: %v", err)
	}
	defer f.Close()
	m, err := model.Load(f)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		b.Fatal(err)
	}
	pool := kernels.NewPool(0)
	defer pool.Close()
	e := &Engine{Model: m, Tokenizer: tok, Pool: pool}
	prompt := make([]int32, 64)
	for i := range prompt {
		prompt[i] = int32(100 + i*37%3000)
	}
	var prefill, decode float64
	for b.Loop() {
		res, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 64, Cache: model.CacheF16})
		if err != nil {
			b.Fatal(err)
		}
		prefill += res.PrefillTokensPerSecond()
		decode += res.DecodeTokensPerSecond()
	}
	b.ReportMetric(prefill/float64(b.N), "prefill-tok/s")
	b.ReportMetric(decode/float64(b.N), "decode-tok/s")
}
