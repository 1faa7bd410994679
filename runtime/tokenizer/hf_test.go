package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"squeeze/runtime/testfiles"
)

// TestHuggingFaceVocab checks the vocabulary FromGGUF reads from gocode-22m.gguf against
// the same tokenizer in Hugging Face's format (tokenizer.json beside it): every token at
// its id, every merge at its rank, the special tokens, and no pre-tokenizer or normalizer
// beyond GGUF's "gpt-2".
func TestHuggingFaceVocab(t *testing.T) {
	tok := ggufTokenizer(t, "gocode-22m/gocode-22m.gguf")
	data, err := os.ReadFile(testfiles.Shared(t, "models", "gocode-22m", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var hf struct {
		AddedTokens []struct {
			ID      int32  `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
		Normalizer   json.RawMessage `json:"normalizer"`
		PreTokenizer struct {
			Type           string `json:"type"`
			AddPrefixSpace bool   `json:"add_prefix_space"`
			UseRegex       bool   `json:"use_regex"`
		} `json:"pre_tokenizer"`
		Model struct {
			Type   string           `json:"type"`
			Vocab  map[string]int32 `json:"vocab"`
			Merges json.RawMessage  `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &hf); err != nil {
		t.Fatal(err)
	}
	if hf.Model.Type != "BPE" || hf.PreTokenizer.Type != "ByteLevel" || hf.PreTokenizer.AddPrefixSpace ||
		!hf.PreTokenizer.UseRegex || string(hf.Normalizer) != "null" {
		t.Fatalf("tokenizer.json is not plain byte-level BPE with GPT-2's expression: model %s, pre %+v, normalizer %s",
			hf.Model.Type, hf.PreTokenizer, hf.Normalizer)
	}
	if len(hf.Model.Vocab) != tok.VocabSize() {
		t.Errorf("tokenizer.json has %d tokens, the GGUF %d", len(hf.Model.Vocab), tok.VocabSize())
	}
	for text, id := range hf.Model.Vocab {
		if got := tok.TokenText(id); got != text {
			t.Errorf("token %d: GGUF %q, tokenizer.json %q", id, got, text)
		}
	}
	for _, a := range hf.AddedTokens {
		if got := tok.TokenText(a.ID); got != a.Content || a.Special != (tok.Type(a.ID) == TypeControl) {
			t.Errorf("added token %d %q (special %v): GGUF %q of type %d", a.ID, a.Content, a.Special, got, tok.Type(a.ID))
		}
	}
	// Merges are "a b" strings in older files and [a, b] pairs in newer ones.
	var merges []string
	if err := json.Unmarshal(hf.Model.Merges, &merges); err != nil {
		merges = nil // Unmarshal leaves zero elements behind on a type error
		var pairs [][2]string
		if err := json.Unmarshal(hf.Model.Merges, &pairs); err != nil {
			t.Fatalf("merges: %v", err)
		}
		for _, p := range pairs {
			merges = append(merges, p[0]+" "+p[1])
		}
	}
	v, err := ReadVocab(ggufFile(t, "gocode-22m/gocode-22m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.Merges, merges) {
		t.Errorf("merges differ: GGUF %d, tokenizer.json %d", len(v.Merges), len(merges))
	}
}
