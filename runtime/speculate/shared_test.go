package speculate

import (
	"os"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/model"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// gocode loads gocode-22m and its tokenizer from ../shared (the test skips without it).
func gocode(tb testing.TB) (*model.Model, *tokenizer.Tokenizer) {
	tb.Helper()
	f, err := gguf.Open(testfiles.Shared(tb, "models", "gocode-22m", "gocode-22m.gguf"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	m, err := model.Load(f)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		tb.Fatal(err)
	}
	return m, tok
}

// devTokens returns the tokens of ../shared/eval/dev.txt (BOS first).
func devTokens(tb testing.TB, tok *tokenizer.Tokenizer) []int32 {
	tb.Helper()
	text, err := os.ReadFile(testfiles.Shared(tb, "eval", "dev.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	return tok.Encode(string(text), true)
}
