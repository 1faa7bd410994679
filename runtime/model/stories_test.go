package model

import (
	"strings"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// TestStories260k decodes greedily from BOS with Karpathy's TinyStories model (tied output,
// SentencePiece tokenizer) and checks the text llama2.c produces.
func TestStories260k(t *testing.T) {
	f, err := gguf.Open(testfiles.Shared(t, "models", "stories260k", "stories260k.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Config.TiedOutput {
		t.Error("stories260k should use tied embeddings")
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	const want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
	p := kernels.NewPool(2)
	defer p.Close()
	for _, kind := range []CacheType{CacheF32, CacheF16} {
		c, err := m.NewCache(0, kind)
		if err != nil {
			t.Fatal(err)
		}
		logits := make([]float32, m.Config.Vocab)
		ids := []int32{tok.BOS()}
		next := tok.BOS()
		for range 40 {
			if err := m.Forward(p, c, []int32{next}, logits, nil); err != nil {
				t.Fatal(err)
			}
			next = argmax(logits)
			ids = append(ids, next)
		}
		text := strings.TrimSpace(tok.Decode(ids[1:]))
		if !strings.HasPrefix(text, want) {
			t.Errorf("%v cache: greedy text\n%q\nwant it to start with\n%q", kind, text, want)
		}
	}
}

// TestModeltestTokenizer checks that a synthetic model's vocabulary is one the tokenizer
// reads and round-trips text through.
func TestModeltestTokenizer(t *testing.T) {
	f := modeltest.Open(t, modeltest.Spec{Tokenizer: true, Vocab: 400})
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	const text = "hello, wörld\n\tfunc main() {}"
	ids := tok.Encode(text, true)
	if len(ids) == 0 || ids[0] != tok.BOS() {
		t.Fatalf("Encode(%q) = %v, want BOS first", text, ids)
	}
	if got := tok.Decode(ids[1:]); got != text {
		t.Errorf("Decode(Encode(%q)) = %q", text, got)
	}
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.Vocab != tok.VocabSize() {
		t.Errorf("model vocabulary %d, tokenizer %d", m.Config.Vocab, tok.VocabSize())
	}
}
