package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// byteLevelVocab returns a "gpt2" vocabulary: the special tokens (control unless listed
// in userDefined), then one token per byte in byte-to-unicode form, then one token per
// merge result. merges are written with plain text parts, "h e", "_" standing for a
// space, and mapped here.
func byteLevelVocab(pre string, merges []string, specials []string, userDefined ...string) Vocab {
	v := Vocab{Model: ModelGPT2, Pre: pre, BOS: -1, EOS: -1, UNK: -1, PAD: -1, EOT: -1}
	for _, s := range specials {
		v.Tokens = append(v.Tokens, s)
		v.Types = append(v.Types, TypeControl)
		if slices.Contains(userDefined, s) {
			v.Types[len(v.Types)-1] = TypeUserDefined
		}
	}
	for b := range 256 {
		v.Tokens = append(v.Tokens, string(byteRune[b]))
		v.Types = append(v.Types, TypeNormal)
	}
	for _, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		a, b = strings.ReplaceAll(a, "_", " "), strings.ReplaceAll(b, "_", " ")
		v.Merges = append(v.Merges, mapBytes(a)+" "+mapBytes(b))
		if !slices.Contains(v.Tokens, mapBytes(a+b)) {
			v.Tokens = append(v.Tokens, mapBytes(a+b))
			v.Types = append(v.Types, TypeNormal)
		}
	}
	return v
}

func mustNew(t testing.TB, v Vocab) *Tokenizer {
	t.Helper()
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pieces returns the decoded piece of each id.
func pieces(tok *Tokenizer, ids []int32) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tok.Piece(id))
	}
	return out
}

// TestBPEMerges checks the merge order on small vocabularies; the expected pieces are
// worked out by hand: the pair with the lowest rank merges first, leftmost on ties.
func TestBPEMerges(t *testing.T) {
	for _, c := range []struct {
		name   string
		pre    string
		merges []string
		vocab  []string // extra tokens that no merge produces
		text   string
		want   []string
	}{
		{"rank order bc first", PreGPT2, []string{"b c", "a b"}, nil, "abc", []string{"a", "bc"}},
		{"rank order ab first", PreGPT2, []string{"a b", "b c"}, nil, "abc", []string{"ab", "c"}},
		{"ties leftmost", PreGPT2, []string{"a a"}, nil, "aaa", []string{"aa", "a"}},
		{"repeated pair", PreGPT2, []string{"a a", "aa aa"}, nil, "aaaaa", []string{"aaaa", "a"}},
		{"chain", PreGPT2, []string{"h e", "l l", "he ll", "hell o", "_ w", "o r", "_w or", "_wor ld", "l d"}, nil,
			"hello world", []string{"hello", " world"}},
		{"words stay apart", PreGPT2, []string{"o _"}, nil, "go go", []string{"g", "o", " ", "g", "o"}},
		// Llama 3 sets ignore_merges: a word that is a token is taken whole.
		{"ignore merges", PreLlamaBPE, []string{"x y"}, []string{"abc"}, "abc abc", []string{"abc", " ", "a", "b", "c"}},
		{"merges without ignore", PreGPT2, []string{"x y"}, []string{"abc"}, "abc", []string{"a", "b", "c"}},
		{"digits llama3", PreLlamaBPE, []string{"1 2", "12 3"}, nil, "12345", []string{"123", "4", "5"}},
		{"digits qwen2", PreQwen2, []string{"1 2", "12 3"}, nil, "12345", []string{"1", "2", "3", "4", "5"}},
		{"bytes of utf-8", PreGPT2, []string{"\xc3 \xa9"}, nil, "é\xff", []string{"é", "\xff"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := byteLevelVocab(c.pre, c.merges, nil)
			for _, extra := range c.vocab {
				v.Tokens = append(v.Tokens, mapBytes(extra))
				v.Types = append(v.Types, TypeNormal)
			}
			tok := mustNew(t, v)
			ids := tok.Encode(c.text, true)
			if got := pieces(tok, ids); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) pieces %q, want %q", c.text, got, c.want)
			}
			if back := tok.Decode(ids); back != c.text {
				t.Errorf("Decode = %q, want %q", back, c.text)
			}
		})
	}
}

// TestBPEVirtualSymbols checks a merge whose result the vocabulary lacks: llama.cpp's
// string-keyed merges still apply it, and a final symbol that is no token is written
// byte by byte.
func TestBPEVirtualSymbols(t *testing.T) {
	v := byteLevelVocab(PreGPT2, nil, nil)
	v.Merges = []string{"a b", "ab c"}
	v.Tokens = append(v.Tokens, "abc") // "ab" is no token
	v.Types = append(v.Types, TypeNormal)
	tok := mustNew(t, v)
	for text, want := range map[string][]string{
		"abc": {"abc"},
		"ab":  {"a", "b"},
		"abd": {"a", "b", "d"},
	} {
		if got := pieces(tok, tok.Encode(text, false)); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) pieces %q, want %q", text, got, want)
		}
	}
}

// TestSpecialTokens checks control and user-defined tokens in the input text.
func TestSpecialTokens(t *testing.T) {
	v := byteLevelVocab(PreGPT2, []string{"h i"},
		[]string{"<s>", "</s>", "<|im_end|>", "<tool>", "ab", "bcd"}, "<tool>")
	v.BOS, v.EOS, v.AddBOS, v.AddEOS = 0, 1, true, true
	tok := mustNew(t, v)
	id := func(s string) int32 {
		i, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		return i
	}
	hi, lt, im, tool, ab, bcd := id(mapBytes("hi")), id(mapBytes("<")), id("<|im_end|>"), id("<tool>"), id("ab"), id("bcd")
	cases := []struct {
		name         string
		text         string
		addSpecial   bool
		parseSpecial bool
		want         []int32 // nil: compare only the decoded text
		decoded      string
		rendered     string
	}{
		{"bos and eos", "hi", true, false, []int32{0, hi, 1}, "hi", "<s>hi</s>"},
		{"no specials", "hi", false, false, []int32{hi}, "hi", "hi"},
		{"control as text", "hi<|im_end|>", false, false, nil, "hi<|im_end|>", "hi<|im_end|>"},
		{"control parsed", "hi<|im_end|>", false, true, []int32{hi, im}, "hi", "hi<|im_end|>"},
		{"user-defined always", "<tool>hi", false, false, []int32{tool, hi}, "<tool>hi", "<tool>hi"},
		{"bos text parsed", "<s>hi</s>", false, true, []int32{0, hi, 1}, "hi", "<s>hi</s>"},
		// Longest first, as llama.cpp: "bcd" is claimed before "ab" can be.
		{"longest first", "abcd", false, true, nil, "a", "abcd"},
		{"repeated", "<s><s>", false, true, []int32{0, 0}, "", "<s><s>"},
		{"partial", "<|im_end", false, true, nil, "<|im_end", "<|im_end"},
		{"adjacent", "<tool><tool>hi", false, false, []int32{tool, tool, hi}, "<tool><tool>hi", "<tool><tool>hi"},
		{"lt", "<", false, true, []int32{lt}, "<", "<"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids := tok.EncodeWithSpecials(c.text, c.addSpecial, c.parseSpecial)
			if c.want != nil && !slices.Equal(ids, c.want) {
				t.Errorf("ids %v, want %v", ids, c.want)
			}
			if got := tok.Decode(ids); got != c.decoded {
				t.Errorf("Decode = %q, want %q", got, c.decoded)
			}
			if got := tok.DecodeWithSpecials(ids, true); got != c.rendered {
				t.Errorf("DecodeWithSpecials = %q, want %q", got, c.rendered)
			}
		})
	}
	if got := tok.EncodeWithSpecials("abcd", false, true); !slices.Equal(got, []int32{id(mapBytes("a")), bcd}) {
		t.Errorf("abcd: ids %v, want [a bcd]", got)
	}
	if got := tok.EncodeWithSpecials("abab", false, true); !slices.Equal(got, []int32{ab, ab}) {
		t.Errorf("abab: ids %v, want [ab ab]", got)
	}
	if !tok.IsEOG(im) || !tok.IsEOG(1) || tok.IsEOG(0) || tok.IsEOG(hi) || tok.IsEOG(-1) || tok.IsEOG(1<<20) {
		t.Errorf("IsEOG wrong: <|im_end|> %v, </s> %v, <s> %v, hi %v", tok.IsEOG(im), tok.IsEOG(1), tok.IsEOG(0), tok.IsEOG(hi))
	}
}

// spmVocab returns a "llama" vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then
// the given pieces with the given scores.
func spmVocab(pieces []string, scores []float32) Vocab {
	v := Vocab{Model: ModelLlama, BOS: 1, EOS: 2, UNK: 0, PAD: -1, EOT: -1, AddBOS: true}
	v.Tokens = []string{"<unk>", "<s>", "</s>"}
	v.Types = []TokenType{TypeUnknown, TypeControl, TypeControl}
	for b := range 256 {
		v.Tokens = append(v.Tokens, string([]byte{'<', '0', 'x', "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15], '>'}))
		v.Types = append(v.Types, TypeByte)
	}
	v.Scores = make([]float32, len(v.Tokens))
	v.Tokens = append(v.Tokens, pieces...)
	v.Scores = append(v.Scores, scores...)
	for range pieces {
		v.Types = append(v.Types, TypeNormal)
	}
	return v
}

// TestSPM checks SentencePiece merging by score and the space prefix on a small
// vocabulary; expected pieces are worked out by hand.
func TestSPM(t *testing.T) {
	v := spmVocab(
		[]string{"▁", "h", "i", "▁h", "hi", "▁hi", "x", "y", "xy", "yx"},
		[]float32{0, 0, 0, -3, -1, -2, 0, 0, -5, -4},
	)
	tok := mustNew(t, v)
	for _, c := range []struct {
		name, text   string
		parseSpecial bool
		want         []string // raw token texts after BOS
		rendered     string
	}{
		// "▁h"+"i": "hi" scores -1, best, then "▁"+"hi" = "▁hi" (-2).
		{"prefix and merge", "hi", false, []string{"▁hi"}, "<s>hi"},
		{"scores pick yx", "xyx", false, []string{"▁", "x", "yx"}, "<s>xyx"},
		{"spaces", " hi  hi", false, []string{"▁", "▁hi", "▁", "▁hi"}, "<s> hi  hi"},
		{"byte fallback", "hé", false, []string{"▁h", "<0xC3>", "<0xA9>"}, "<s>hé"},
		{"prefix after special", "hi<s>hi", true, []string{"▁hi", "<s>", "▁hi"}, "<s>hi<s>hi"},
		{"no parse", "<s>", false, []string{"▁", "<0x3C>", "<0x73>", "<0x3E>"}, "<s><s>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids := tok.EncodeWithSpecials(c.text, true, c.parseSpecial)
			var got []string
			for _, id := range ids[1:] {
				got = append(got, tok.TokenText(id))
			}
			if ids[0] != 1 || !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v %q, want BOS then %q", c.text, ids[:1], got, c.want)
			}
			if r := tok.DecodeWithSpecials(ids, true); r != c.rendered {
				t.Errorf("DecodeWithSpecials = %q, want %q", r, c.rendered)
			}
			if !c.parseSpecial {
				if d := tok.Decode(ids); d != c.text {
					t.Errorf("Decode = %q, want %q", d, c.text)
				}
			}
		})
	}

	v.NoSpacePrefix = true
	noPrefix := mustNew(t, v)
	if got := noPrefix.Encode("hi", false); !slices.Equal(got, []int32{int32(len(v.Tokens) - 6)}) {
		t.Errorf("without space prefix: Encode(hi) = %v, want [hi]", got)
	}
	if got := noPrefix.Decode(noPrefix.Encode(" hi", false)); got != " hi" {
		t.Errorf("without space prefix: round trip gives %q", got)
	}

	// Without byte tokens, characters outside the vocabulary become <unk>.
	v = spmVocab([]string{"▁", "a"}, []float32{0, 0})
	v.Tokens, v.Types, v.Scores = slices.Delete(v.Tokens, 3, 259), slices.Delete(v.Types, 3, 259), slices.Delete(v.Scores, 3, 259)
	tok = mustNew(t, v)
	if got := tok.Encode("aé", false); !slices.Equal(got, []int32{3, 4, 0, 0}) {
		t.Errorf("unknown characters: Encode = %v, want [▁ a <unk> <unk>]", got)
	}
	if got := tok.Decode([]int32{3, 4, 0}); got != "a<unk>" {
		t.Errorf("Decode with <unk> = %q, want %q", got, "a<unk>")
	}
}

// TestNewErrors checks that bad vocabularies give the sentinel errors and name the
// problem.
func TestNewErrors(t *testing.T) {
	good := byteLevelVocab(PreGPT2, []string{"a b"}, []string{"<s>"})
	good.BOS = 0
	for _, c := range []struct {
		name   string
		edit   func(v *Vocab)
		target error
		text   string
	}{
		{"no tokens", func(v *Vocab) { v.Tokens = nil; v.Types = nil }, ErrInvalidVocab, "no tokens"},
		{"scores length", func(v *Vocab) { v.Scores = []float32{1} }, ErrInvalidVocab, "scores"},
		{"types length", func(v *Vocab) { v.Types = v.Types[:3] }, ErrInvalidVocab, "types"},
		{"bos range", func(v *Vocab) { v.BOS = 100000 }, ErrInvalidVocab, "BOS"},
		{"eos negative", func(v *Vocab) { v.EOS = -7 }, ErrInvalidVocab, "EOS"},
		{"add bos without bos", func(v *Vocab) { v.BOS, v.AddBOS = -1, true }, ErrInvalidVocab, "BOS"},
		{"no merges", func(v *Vocab) { v.Merges = nil }, ErrInvalidVocab, "merges"},
		{"bad merge", func(v *Vocab) { v.Merges = []string{"ab"} }, ErrInvalidVocab, `"ab"`},
		{"bad merge end", func(v *Vocab) { v.Merges = []string{"a "} }, ErrInvalidVocab, `"a "`},
		{"unknown model", func(v *Vocab) { v.Model = "bert" }, ErrUnsupported, `"bert"`},
		{"unknown pre", func(v *Vocab) { v.Pre = "falcon" }, ErrUnsupported, `"falcon"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := good
			c.edit(&v)
			_, err := New(v)
			if !errors.Is(err, c.target) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("New: %v, want an error wrapping %v that mentions %s", err, c.target, c.text)
			}
		})
	}
	if _, err := New(good); err != nil {
		t.Errorf("New(good): %v", err)
	}
}
