package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

// splitAll cuts s into the words split gives.
func splitAll(split splitFunc, s string) []string {
	var words []string
	for len(s) > 0 {
		n := split(s)
		words = append(words, s[:n])
		s = s[n:]
	}
	return words
}

// TestPreTokenizers checks each scanner against splits written by hand from its regular
// expression (the comment names the alternative that decides); every expected split was
// also confirmed with Python's "regex" module, which supports the lookahead. (Beyond
// these tables, the scanners and the BPE built on them agreed with that module and the
// merges of gocode-22m on 40,000 random strings over an alphabet of awkward characters
// and slices of dev.txt, for all three pre-tokenizers.)
func TestPreTokenizers(t *testing.T) {
	for _, c := range []struct {
		pre, text string
		want      []string
	}{
		// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
		{PreGPT2, "Hello world", []string{"Hello", " world"}},   // ' ?\p{L}+'
		{PreGPT2, "it's", []string{"it", "'s"}},                 // contraction
		{PreGPT2, "IT'S", []string{"IT", "'", "S"}},             // contractions are case-sensitive
		{PreGPT2, "'ll've", []string{"'ll", "'ve"}},             // contractions
		{PreGPT2, "x.'s", []string{"x", ".'", "s"}},             // ' ?[^\s\p{L}\p{N}]+' is greedy
		{PreGPT2, " 's", []string{" '", "s"}},                   // space then punctuation
		{PreGPT2, "a   b", []string{"a", "  ", " b"}},           // '\s+(?!\S)' leaves the last space
		{PreGPT2, "x  \n", []string{"x", "  \n"}},               // '\s+(?!\S)' at the end takes all
		{PreGPT2, "a \n", []string{"a", " \n"}},                 // same
		{PreGPT2, "\n\n\tfunc", []string{"\n\n", "\t", "func"}}, // '\s+(?!\S)', then '\s+'
		{PreGPT2, "a\tb", []string{"a", "\t", "b"}},             // a lone tab: '\s+'
		{PreGPT2, "foo123bar", []string{"foo", "123", "bar"}},   // ' ?\p{N}+'
		{PreGPT2, " 123", []string{" 123"}},                     // ' ?\p{N}+'
		{PreGPT2, "2 + 2", []string{"2", " +", " 2"}},           // ' ?[^\s\p{L}\p{N}]+'
		{PreGPT2, "x==y;", []string{"x", "==", "y", ";"}},       // ' ?[^\s\p{L}\p{N}]+'
		{PreGPT2, "naïve café", []string{"naïve", " café"}},     // \p{L} beyond ASCII
		{PreGPT2, "½ ⁶", []string{"½", " ⁶"}},                   // \p{N} includes No
		{PreGPT2, "\u00a0x", []string{"\u00a0", "x"}},           // NBSP is \s but not ' '
		{PreGPT2, "a\xffb", []string{"a", "\xff", "b"}},         // an invalid byte is "other"
		{PreGPT2, "\xff\xfe 1", []string{"\xff\xfe", " 1"}},     // invalid bytes run together
		{PreGPT2, "世界 🙂!", []string{"世界", " 🙂!"}},               // emoji and '!' are both "other"
		{PreGPT2, " ", []string{" "}},                           // a lone space
		{PreGPT2, "\r\n\r\n", []string{"\r\n\r\n"}},             // '\s+' at the end
		{PreGPT2, "x \u202fy", []string{"x", " ", "\u202f", "y"}},
		{PreGPT2, "x\u3000\u3000y", []string{"x", "\u3000", "\u3000", "y"}}, // ideographic space: \s, not ' '
		{PreGPT2, "a\u0085b", []string{"a", "\u0085", "b"}},                 // NEL is \s
		{PreGPT2, "a\x1cb", []string{"a", "\x1c", "b"}},                     // U+001C is not White_Space
		{PreGPT2, "e\u0301x", []string{"e", "\u0301", "x"}},                 // a combining mark (Mn) is no \p{L} // narrow NBSP is \s

		// Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
		//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
		{PreLlamaBPE, "Hello world", []string{"Hello", " world"}},   // '[^\r\n\p{L}\p{N}]?\p{L}+'
		{PreLlamaBPE, "IT'S", []string{"IT", "'S"}},                 // (?i) contractions
		{PreLlamaBPE, "WE'LL", []string{"WE", "'LL"}},               // (?i) contractions
		{PreLlamaBPE, "don't", []string{"don", "'t"}},               // contraction
		{PreLlamaBPE, "12345", []string{"123", "45"}},               // '\p{N}{1,3}'
		{PreLlamaBPE, " 123", []string{" ", "123"}},                 // no space before digits: '\s+'
		{PreLlamaBPE, "1.5", []string{"1", ".", "5"}},               // '\p{N}{1,3}', ' ?[^\s\p{L}\p{N}]+'
		{PreLlamaBPE, "(foo)", []string{"(foo", ")"}},               // any non-letter may lead letters
		{PreLlamaBPE, "\tfunc", []string{"\tfunc"}},                 // a tab too
		{PreLlamaBPE, "a.\n\nb", []string{"a", ".\n\n", "b"}},       // '[\r\n]*' after punctuation
		{PreLlamaBPE, "==\n", []string{"==\n"}},                     // same
		{PreLlamaBPE, " ?!", []string{" ?!"}},                       // ' ?[^\s\p{L}\p{N}]+'
		{PreLlamaBPE, "x  \n  y", []string{"x", "  \n", " ", " y"}}, // '\s*[\r\n]+', '\s+(?!\S)'
		{PreLlamaBPE, "x\r\n", []string{"x", "\r\n"}},               // '\s*[\r\n]+'
		{PreLlamaBPE, "\n x", []string{"\n", " x"}},                 // '\s*[\r\n]+' stops at the break
		{PreLlamaBPE, "a  b", []string{"a", " ", " b"}},             // '\s+(?!\S)'
		{PreLlamaBPE, "a  \tb", []string{"a", "  ", "\tb"}},         // '\s+(?!\S)', tab leads letters
		{PreLlamaBPE, "a\n\n", []string{"a", "\n\n"}},               // '\s*[\r\n]+'
		{PreLlamaBPE, "'x", []string{"'x"}},                         // no contraction: "'" leads letters
		{PreLlamaBPE, "٣٤٥٦", []string{"٣٤٥", "٦"}},                 // Arabic-Indic digits are \p{N}
		{PreLlamaBPE, "x\xff\xfe\n", []string{"x", "\xff\xfe\n"}},   // invalid bytes are "other"
		{PreLlamaBPE, "\xffab", []string{"\xffab"}},                 // and may lead letters

		// Qwen2: Llama 3's expression with \p{N} instead of \p{N}{1,3}.
		{PreQwen2, "12345", []string{"1", "2", "3", "4", "5"}},
		{PreQwen2, "abc123", []string{"abc", "1", "2", "3"}},
		{PreQwen2, "Ⅻ½", []string{"Ⅻ", "½"}}, // Nl and No are \p{N}
		{PreQwen2, "IT'S", []string{"IT", "'S"}},
		{PreQwen2, "x  \n  y", []string{"x", "  \n", " ", " y"}},
	} {
		got := splitAll(preTokenizers[c.pre], c.text)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %q: split %q, want %q", c.pre, c.text, got, c.want)
		}
	}
}

// TestPreTokenizersCover checks that every scanner cuts any input into non-empty words
// that join back to it.
func TestPreTokenizersCover(t *testing.T) {
	inputs := []string{
		"", "a", " ", "\n", "'", "'s", "\xff", "\xe4\xb8", "x  \n\t  y 12345 ½ 'LL",
		strings.Repeat(" ", 100) + "x", "🙂🙂 🙂\u00a0\u00a0\u2028",
	}
	for name, split := range preTokenizers {
		for _, in := range inputs {
			words := splitAll(split, in)
			if strings.Join(words, "") != in || slices.Contains(words, "") {
				t.Errorf("%s %q: words %q do not cover the input", name, in, words)
			}
		}
	}
}
