package tokenizer

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/gguf"
)

// buildGGUF writes a GGUF file holding the given metadata (and no tensors) and parses it.
func buildGGUF(t *testing.T, kv map[string]any) *gguf.File {
	t.Helper()
	w := gguf.NewWriter()
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := w.AddKV(k, kv[k]); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// gpt2Metadata returns the tokenizer metadata of a small byte-level vocabulary.
func gpt2Metadata() map[string]any {
	v := byteLevelVocab(PreGPT2, []string{"h i"}, []string{"<s>", "</s>"})
	types := make([]int32, len(v.Types))
	for i, typ := range v.Types {
		types[i] = int32(typ)
	}
	return map[string]any{
		KeyModel:     "gpt2",
		KeyPre:       "gpt-2",
		KeyTokens:    v.Tokens,
		KeyTokenType: types,
		KeyMerges:    v.Merges,
		KeyBOS:       uint32(0),
		KeyEOS:       uint32(1),
		KeyAddBOS:    true,
	}
}

// TestReadVocab checks the keys FromGGUF reads and the defaults of absent ones.
func TestReadVocab(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(kv map[string]any)
		check func(t *testing.T, v Vocab)
	}{
		{"all keys", func(map[string]any) {}, func(t *testing.T, v Vocab) {
			if v.Model != ModelGPT2 || v.Pre != PreGPT2 || v.BOS != 0 || v.EOS != 1 || !v.AddBOS || v.AddEOS || v.UNK != -1 {
				t.Errorf("got %+v", v)
			}
		}},
		{"no pre, no add_bos", func(kv map[string]any) { delete(kv, KeyPre); delete(kv, KeyAddBOS) }, func(t *testing.T, v Vocab) {
			if v.Pre != "" || v.AddBOS {
				t.Errorf("Pre %q AddBOS %v, want \"\" false", v.Pre, v.AddBOS)
			}
		}},
		{"llama-bpe adds bos", func(kv map[string]any) { kv[KeyPre] = "llama-bpe"; delete(kv, KeyAddBOS) }, func(t *testing.T, v Vocab) {
			if !v.AddBOS {
				t.Error("AddBOS false, want true for llama-bpe")
			}
		}},
		{"bos out of range ignored", func(kv map[string]any) { kv[KeyBOS] = uint32(1 << 30) }, func(t *testing.T, v Vocab) {
			if v.BOS != -1 || v.AddBOS {
				t.Errorf("BOS %d AddBOS %v, want -1 false", v.BOS, v.AddBOS)
			}
		}},
		{"eot and eos", func(kv map[string]any) { kv[KeyEOT] = uint32(1); kv[KeyAddEOS] = true }, func(t *testing.T, v Vocab) {
			if v.EOT != 1 || !v.AddEOS {
				t.Errorf("EOT %d AddEOS %v, want 1 true", v.EOT, v.AddEOS)
			}
		}},
		{"llama defaults", func(kv map[string]any) {
			kv[KeyModel] = "llama"
			kv[KeyScores] = make([]float32, len(kv[KeyTokens].([]string)))
			for _, k := range []string{KeyBOS, KeyEOS, KeyAddBOS, KeyMerges, KeyTokenType} {
				delete(kv, k)
			}
			kv[KeyAddSpacePrefix] = false
		}, func(t *testing.T, v Vocab) {
			if v.BOS != 1 || v.EOS != 2 || v.UNK != 0 || !v.AddBOS || !v.NoSpacePrefix || v.Types != nil || len(v.Scores) != len(v.Tokens) {
				t.Errorf("got BOS %d EOS %d UNK %d AddBOS %v NoSpacePrefix %v types %v", v.BOS, v.EOS, v.UNK, v.AddBOS, v.NoSpacePrefix, v.Types != nil)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			kv := gpt2Metadata()
			c.edit(kv)
			v, err := ReadVocab(buildGGUF(t, kv))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, v)
			if _, err := New(v); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// TestFromGGUFErrors checks that missing required keys, wrong value types and unknown
// models give errors that name them.
func TestFromGGUFErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(kv map[string]any)
		targets []error
		text    string
	}{
		{"no model", func(kv map[string]any) { delete(kv, KeyModel) }, []error{ErrInvalidVocab, gguf.ErrNotFound}, KeyModel},
		{"no tokens", func(kv map[string]any) { delete(kv, KeyTokens) }, []error{ErrInvalidVocab, gguf.ErrNotFound}, KeyTokens},
		{"no merges", func(kv map[string]any) { delete(kv, KeyMerges) }, []error{ErrInvalidVocab, gguf.ErrNotFound}, KeyMerges},
		{"unknown model", func(kv map[string]any) { kv[KeyModel] = "rwkv" }, []error{ErrUnsupported}, `"rwkv"`},
		{"unknown pre", func(kv map[string]any) { kv[KeyPre] = "deepseek-llm" }, []error{ErrUnsupported}, `"deepseek-llm"`},
		{"tokens not strings", func(kv map[string]any) { kv[KeyTokens] = []int32{1, 2} }, []error{ErrInvalidVocab, gguf.ErrCorrupt}, KeyTokens},
		{"bos not integer", func(kv map[string]any) { kv[KeyBOS] = "zero" }, []error{ErrInvalidVocab, gguf.ErrCorrupt}, KeyBOS},
		{"add_bos not bool", func(kv map[string]any) { kv[KeyAddBOS] = uint8(1) }, []error{ErrInvalidVocab, gguf.ErrCorrupt}, KeyAddBOS},
		{"types length", func(kv map[string]any) { kv[KeyTokenType] = []int32{1} }, []error{ErrInvalidVocab}, "types"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kv := gpt2Metadata()
			c.edit(kv)
			_, err := FromGGUF(buildGGUF(t, kv))
			for _, target := range c.targets {
				if !errors.Is(err, target) {
					t.Errorf("FromGGUF: %v, want an error wrapping %v", err, target)
				}
			}
			if err != nil && !strings.Contains(err.Error(), c.text) {
				t.Errorf("FromGGUF: %v, want it to mention %s", err, c.text)
			}
		})
	}
	tok, err := FromGGUF(buildGGUF(t, gpt2Metadata()))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("hi", true); len(got) != 2 || got[0] != 0 || tok.TokenText(got[1]) != "hi" {
		t.Errorf("Encode(hi) = %v, want [<s> hi]", got)
	}
}
