package tokenizer

import (
	"os"
	"strings"
	"sync"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/testfiles"
)

// ggufFile opens a reference model under ../shared/models for the duration of the test;
// it skips the test when the file is absent.
func ggufFile(t testing.TB, rel string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(testfiles.Shared(t, append([]string{"models"}, strings.Split(rel, "/")...)...))
	if err != nil {
		t.Fatalf("open %s: %v", rel, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

var (
	ggufTokMu sync.Mutex
	ggufToks  = map[string]*Tokenizer{}
)

// ggufTokenizer returns the tokenizer of a reference model under ../shared/models, read
// once per test binary; it skips the test when the file is absent.
func ggufTokenizer(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	path := testfiles.Shared(t, append([]string{"models"}, strings.Split(rel, "/")...)...)
	ggufTokMu.Lock()
	defer ggufTokMu.Unlock()
	if tok, ok := ggufToks[rel]; ok {
		return tok
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", rel, err)
	}
	defer f.Close()
	tok, err := FromGGUF(f)
	if err != nil {
		t.Fatalf("tokenizer of %s: %v", rel, err)
	}
	ggufToks[rel] = tok
	return tok
}

// devDocuments returns ../shared/eval/dev.txt and its documents, each starting at its
// "// ==== path ====" header line.
func devDocuments(t testing.TB) (string, []string) {
	t.Helper()
	data, err := os.ReadFile(testfiles.Shared(t, "eval", "dev.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var docs []string
	start := 0
	for i := 0; i < len(text); {
		j := strings.Index(text[i:], "\n// ==== ")
		if j < 0 {
			break
		}
		i += j + 1
		docs = append(docs, text[start:i])
		start = i
	}
	docs = append(docs, text[start:])
	return text, docs
}
