package decode

import (
	"context"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sample"
	"squeeze/runtime/tokenizer"
)

// syntheticEngine builds an engine on a random-weight model with a SentencePiece
// vocabulary (byte fallback), so it runs without any file from outside the repository.
func syntheticEngine(t *testing.T, spec modeltest.Spec) *Engine {
	t.Helper()
	spec.Tokenizer = true
	f := modeltest.Open(t, spec)
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

func TestSyntheticGreedyMatchesArgmax(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 1})
	prompt := e.Tokenizer.Encode("hello world", true)
	res, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	if want := manualGreedy(t, e, prompt, len(res.Tokens), model.CacheF32); !slices.Equal(res.Tokens, want) {
		t.Fatalf("Generate %v\nargmax   %v", res.Tokens, want)
	}
}

func TestSyntheticStreamingIsValidUTF8(t *testing.T) {
	// Random weights emit byte tokens freely: pieces must still be whole characters
	// (the decoder holds incomplete sequences and replaces invalid bytes).
	e := syntheticEngine(t, modeltest.Spec{Seed: 2})
	var pieces []string
	res, err := e.Generate(context.Background(), "ab", Options{
		MaxTokens: 60,
		Sampling:  sample.Options{Temperature: 1.5, Seed: 3},
		OnText:    func(s string) error { pieces = append(pieces, s); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pieces {
		if !utf8.ValidString(p) {
			t.Fatalf("piece %q is not valid UTF-8", p)
		}
	}
	if strings.Join(pieces, "") != res.Text {
		t.Fatalf("streamed %q, Result.Text %q", strings.Join(pieces, ""), res.Text)
	}
}

func TestSyntheticContextFull(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 4})
	// With these weights (seed 4) greedy decoding of "abc" does not produce EOS within
	// 6 tokens, so the cache of prompt + 5 positions is what stops it: 5 tokens are fed
	// back and the 6th needs no forward pass.
	prompt := e.Tokenizer.Encode("abc", true)
	res, err := e.GenerateTokens(context.Background(), prompt, Options{ContextLen: len(prompt) + 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopContext || len(res.Tokens) != 6 {
		t.Fatalf("tokens %v, reason %q; want 6 tokens and context_full", res.Tokens, res.StopReason)
	}
	// A prompt longer than the cache is refused.
	if _, err := e.GenerateTokens(context.Background(), prompt, Options{ContextLen: len(prompt) - 1}); err == nil {
		t.Fatal("prompt longer than the context accepted")
	}
}
