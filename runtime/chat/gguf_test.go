package chat

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/tokenizer"
)

// qwenGGUF builds a GGUF with a small byte-level BPE vocabulary like Qwen's (no BOS,
// EOS <|im_end|>) and the given metadata added.
func qwenGGUF(tb testing.TB, meta map[string]any) *gguf.File {
	tb.Helper()
	w := gguf.NewWriter()
	kv := []struct {
		key   string
		value any
	}{
		{tokenizer.KeyModel, "gpt2"},
		{tokenizer.KeyPre, "qwen2"},
		{tokenizer.KeyTokens, []string{"a", "b", "ab", "<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
		{tokenizer.KeyMerges, []string{"a b"}},
		{tokenizer.KeyEOS, uint32(5)},
	}
	for _, e := range kv {
		if err := w.AddKV(e.key, e.value); err != nil {
			tb.Fatal(err)
		}
	}
	for k, v := range meta {
		if err := w.AddKV(k, v); err != nil {
			tb.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		tb.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func TestFromGGUF(t *testing.T) {
	t.Run("llama2 with SentencePiece vocabulary", func(t *testing.T) {
		f := modeltest.Open(t, modeltest.Spec{Tokenizer: true, Meta: map[string]any{KeyTemplate: modeltest.ChatTemplate(t, "llama2")}})
		tmpl, err := FromGGUF(f)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.Family() != FamilyLlama2 || tmpl.BOS() != "<s>" || tmpl.EOS() != "</s>" || !tmpl.AddsBOS() {
			t.Errorf("family %q, BOS %q, EOS %q, AddsBOS %v; want llama2, <s>, </s>, true", tmpl.Family(), tmpl.BOS(), tmpl.EOS(), tmpl.AddsBOS())
		}
		got, err := tmpl.Render(multi, true)
		want := "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"
		if err != nil || got != want {
			t.Errorf("Render = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("qwen2.5 with BPE vocabulary", func(t *testing.T) {
		tmpl, err := FromGGUF(qwenGGUF(t, map[string]any{KeyTemplate: modeltest.ChatTemplate(t, "qwen2.5")}))
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.Family() != FamilyChatML || tmpl.BOS() != "" || tmpl.EOS() != "<|im_end|>" || tmpl.AddsBOS() {
			t.Errorf("family %q, BOS %q, EOS %q, AddsBOS %v; want chatml, none, <|im_end|>, false", tmpl.Family(), tmpl.BOS(), tmpl.EOS(), tmpl.AddsBOS())
		}
		if got := tmpl.Stop(); len(got) != 1 || got[0] != "<|im_end|>" {
			t.Errorf("Stop() = %q", got)
		}
	})
	for _, tc := range []struct {
		name string
		f    func(t *testing.T) *gguf.File
		want []error
	}{
		{"no template", func(t *testing.T) *gguf.File { return modeltest.Open(t, modeltest.Spec{Tokenizer: true}) }, []error{ErrNoTemplate}},
		{"template of the wrong type", func(t *testing.T) *gguf.File {
			return qwenGGUF(t, map[string]any{KeyTemplate: uint32(7)})
		}, []error{gguf.ErrCorrupt}},
		{"unsupported template", func(t *testing.T) *gguf.File {
			return qwenGGUF(t, map[string]any{KeyTemplate: modeltest.ChatTemplate(t, "phi3")})
		}, []error{ErrUnsupported}},
		{"empty template", func(t *testing.T) *gguf.File {
			return qwenGGUF(t, map[string]any{KeyTemplate: ""})
		}, []error{ErrNoTemplate}},
		{"template without vocabulary", func(t *testing.T) *gguf.File {
			return modeltest.Open(t, modeltest.Spec{Meta: map[string]any{KeyTemplate: modeltest.ChatTemplate(t, "chatml")}})
		}, []error{tokenizer.ErrInvalidVocab}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromGGUF(tc.f(t))
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("FromGGUF: %v; want %v", err, want)
				}
			}
		})
	}
}

// TestTokenizeBOS follows the package documentation on BOS with a real tokenizer: the
// rendered text, encoded with special-token parsing and without addSpecial, has BOS once
// at the start (and before later user turns, as Llama 2 writes it); cutting BOS() off the
// text and letting the tokenizer add it gives the same ids.
func TestTokenizeBOS(t *testing.T) {
	_, f, tok := testmodel.Spec(t, modeltest.Spec{Tokenizer: true, Meta: map[string]any{KeyTemplate: modeltest.ChatTemplate(t, "llama2")}})
	tmpl, err := FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.AddBOS() || !tmpl.AddsBOS() {
		t.Fatalf("tokenizer AddBOS %v, template AddsBOS %v; the test needs both", tok.AddBOS(), tmpl.AddsBOS())
	}
	text, err := tmpl.Render(multi, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.EncodeWithSpecials(text, false, true)
	var at []int
	for i, id := range ids {
		if id == tok.BOS() {
			at = append(at, i)
		}
	}
	if len(at) != 3 || at[0] != 0 {
		t.Errorf("BOS at %v of %d ids; want at 0 and before the two later user turns", at, len(ids))
	}
	cut, ok := strings.CutPrefix(text, tmpl.BOS())
	if !ok {
		t.Fatalf("%q does not start with %q", text, tmpl.BOS())
	}
	if again := tok.EncodeWithSpecials(cut, true, true); !slices.Equal(again, ids) {
		t.Errorf("cut BOS and let the tokenizer add it: %v; want %v", again, ids)
	}
}
