package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"squeeze/runtime/testfiles"
)

// TestReferenceTokens checks the tokenization of the prompts in each reference model's
// reference.json, whose ids come from the Hugging Face tokenizer the models were trained
// with (BOS first).
func TestReferenceTokens(t *testing.T) {
	for _, name := range []string{"gocode-22m", "gocode-demo", "gocode-shared"} {
		t.Run(name, func(t *testing.T) {
			tok := ggufTokenizer(t, name+"/"+name+".gguf")
			data, err := os.ReadFile(testfiles.Shared(t, "models", name, "reference.json"))
			if err != nil {
				t.Fatal(err)
			}
			var ref struct {
				Cases []struct {
					Text   string  `json:"text"`
					Tokens []int32 `json:"tokens"`
				} `json:"cases"`
			}
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatal(err)
			}
			if len(ref.Cases) == 0 {
				t.Fatal("reference.json has no cases")
			}
			for i, c := range ref.Cases {
				got := tok.Encode(c.Text, true)
				if !slices.Equal(got, c.Tokens) {
					t.Errorf("case %d: Encode = %v\nwant %v", i, got, c.Tokens)
				}
				if back := tok.Decode(got); back != c.Text {
					t.Errorf("case %d: Decode(Encode(text)) = %q, want %q", i, back, c.Text)
				}
			}
		})
	}
}
