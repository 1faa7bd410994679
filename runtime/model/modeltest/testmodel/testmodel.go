// Package testmodel opens models for the tests of packages above package model: the
// synthetic ones modeltest builds and the project's reference models in ../shared, each
// with its tokenizer where the file has one. (modeltest cannot do it itself: package
// model's own tests import modeltest.) Every file is closed when its test ends.
package testmodel

import (
	"maps"
	"os"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// Spec loads the synthetic model s describes, with its tokenizer if s.Tokenizer is set
// (otherwise the tokenizer is nil).
func Spec(tb testing.TB, s modeltest.Spec) (*model.Model, *gguf.File, *tokenizer.Tokenizer) {
	tb.Helper()
	f := modeltest.Open(tb, s)
	m, err := model.Load(f)
	if err != nil {
		tb.Fatal(err)
	}
	if !s.Tokenizer {
		return m, f, nil
	}
	return m, f, fileTokenizer(tb, f)
}

// Shared loads ../shared/models/name/name.gguf and its tokenizer, skipping the test when
// the file is absent.
func Shared(tb testing.TB, name string) (*model.Model, *gguf.File, *tokenizer.Tokenizer) {
	tb.Helper()
	return File(tb, testfiles.Shared(tb, "models", name, name+".gguf"))
}

// File loads the model file at path and its tokenizer.
func File(tb testing.TB, path string) (*model.Model, *gguf.File, *tokenizer.Tokenizer) {
	tb.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	m, err := model.Load(f)
	if err != nil {
		tb.Fatal(err)
	}
	return m, f, fileTokenizer(tb, f)
}

// DevText returns the evaluation text ../shared/eval/dev.txt, skipping the test when it
// is absent.
func DevText(tb testing.TB) string {
	tb.Helper()
	text, err := os.ReadFile(testfiles.Shared(tb, "eval", "dev.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(text)
}

func fileTokenizer(tb testing.TB, f *gguf.File) *tokenizer.Tokenizer {
	tb.Helper()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// ChatML returns s (which must have a tokenizer) with a chat template and the
// vocabulary's last two tokens turned into ChatML's control tokens <|im_start|> and
// <|im_end|>, as Qwen-style vocabularies have them. The keys already in s.Meta stay.
func ChatML(tb testing.TB, s modeltest.Spec, template string) modeltest.Spec {
	tb.Helper()
	vocab, err := tokenizer.ReadVocab(modeltest.Open(tb, s))
	if err != nil {
		tb.Fatal(err)
	}
	n := len(vocab.Tokens)
	tokens := slices.Clone(vocab.Tokens)
	tokens[n-2], tokens[n-1] = "<|im_start|>", "<|im_end|>"
	types := make([]int32, n)
	for i, ty := range vocab.Types {
		types[i] = int32(ty)
	}
	types[n-2], types[n-1] = int32(tokenizer.TypeControl), int32(tokenizer.TypeControl)
	meta := maps.Clone(s.Meta)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["tokenizer.chat_template"] = template // runtime/chat.KeyTemplate (chat's tests import this package)
	meta["tokenizer.ggml.tokens"] = tokens
	meta["tokenizer.ggml.token_type"] = types
	s.Meta = meta
	return s
}
