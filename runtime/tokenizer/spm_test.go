package tokenizer

import (
	"slices"
	"testing"
)

// TestStories260K checks the SentencePiece tokenizer of stories260k against ids from a
// Python port of llama2.c's encode() (run.c) over the original tok512.bin, an
// independent implementation of the same algorithm: a dummy-prefix space, byte fallback
// (id = byte + 3) for characters outside the vocabulary, and greedy merging of the
// best-scoring pair, leftmost on ties.
func TestStories260K(t *testing.T) {
	tok := ggufTokenizer(t, "stories260k/stories260k.gguf")
	if tok.BOS() != 1 || tok.EOS() != 2 {
		t.Errorf("BOS, EOS = %d, %d, want 1, 2", tok.BOS(), tok.EOS())
	}
	if tok.VocabSize() != 512 || tok.Model() != ModelLlama {
		t.Errorf("VocabSize, Model = %d, %q, want 512, %q", tok.VocabSize(), tok.Model(), ModelLlama)
	}
	if !tok.IsEOG(2) || tok.IsEOG(1) {
		t.Errorf("IsEOG(2), IsEOG(1) = %v, %v, want true, false", tok.IsEOG(2), tok.IsEOG(1))
	}
	for _, c := range []struct {
		name, text string
		want       []int32
		byteTokens bool
	}{
		{"story", "Once upon a time, there was a little girl named Lily.",
			[]int32{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}, false},
		{"byte fallback", "héllo 世界 🙂 naïve",
			[]int32{1, 270, 485, 306, 414, 410, 231, 187, 153, 234, 152, 143, 410, 243, 162, 156, 133, 297, 412, 198, 178, 360}, true},
		{"spaces", "  two  spaces",
			[]int32{1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419}, false},
		{"punctuation", `Lily's dog said: "Zebra? 42!"`,
			[]int32{1, 317, 439, 419, 400, 428, 336, 467, 313, 469, 411, 430, 420, 412, 450, 410, 484, 479, 443, 436}, false},
		{"empty", "", []int32{1}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := tok.Encode(c.text, true)
			if !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v\nwant %v", c.text, got, c.want)
			}
			if back := tok.Decode(got); back != c.text {
				t.Errorf("Decode(Encode(%q)) = %q", c.text, back)
			}
			hasBytes := slices.ContainsFunc(got, func(id int32) bool { return tok.Type(id) == TypeByte })
			if hasBytes != c.byteTokens {
				t.Errorf("byte tokens used: %v, want %v", hasBytes, c.byteTokens)
			}
		})
	}
}
