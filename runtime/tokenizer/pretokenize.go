package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// splitFunc returns the length in bytes of the first word of s, which is not empty; the
// result is between 1 and len(s). A pre-tokenizer is applied by cutting words off the
// front of the text until none is left.
//
// The three pre-tokenizers are the regular expressions below, which need lookahead
// (\s+(?!\S)) that Go's regexp lacks; each splitFunc is a hand-written scanner that
// returns what the expression's leftmost match at the start of s would be, alternatives
// tried in order as a backtracking engine does (as llama.cpp's
// unicode_regex_split_custom_gpt2 and _llama3 do). Classes: \p{L} is unicode.IsLetter,
// \p{N} unicode.IsNumber, \s unicode.IsSpace (Unicode White_Space); a byte that is not
// valid UTF-8 counts as a one-byte character of none of these classes.
type splitFunc func(s string) int

// preTokenizers maps the tokenizer.ggml.pre names this package implements to their
// scanners.
var preTokenizers = map[string]splitFunc{
	PreGPT2:     splitGPT2,
	PreLlamaBPE: splitLlama3,
	PreQwen2:    splitQwen2,
}

// Character classes of the pre-tokenizer expressions.
const (
	classOther  = iota // [^\s\p{L}\p{N}]
	classLetter        // \p{L}
	classNumber        // \p{N}
	classSpace         // \s
)

// asciiClass holds the class of each ASCII character.
var asciiClass [utf8.RuneSelf]uint8

func init() {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		asciiClass[r] = slowClass(r)
	}
}

func slowClass(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// next decodes the character at the start of s and returns it, its class and its width.
// An invalid byte is returned as utf8.RuneError of width 1 and class classOther.
func next(s string) (rune, uint8, int) {
	if c := s[0]; c < utf8.RuneSelf {
		return rune(c), asciiClass[c], 1
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n == 1 {
		return r, classOther, 1
	}
	return r, slowClass(r), n
}

// classAt returns the class of the character at s[i:], or -1 past the end.
func classAt(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	_, c, _ := next(s[i:])
	return int(c)
}

// skipClass returns the offset of the first character at or after i not of class c.
func skipClass(s string, i int, c uint8) int {
	for i < len(s) {
		_, ci, n := next(s[i:])
		if ci != c {
			break
		}
		i += n
	}
	return i
}

// contraction returns the length of the contraction suffix 's 't 're 've 'm 'll 'd at
// the start of s (apostrophe included), or 0. With fold, ASCII letters match in either
// case.
func contraction(s string, fold bool) int {
	if len(s) < 2 || s[0] != '\'' {
		return 0
	}
	lower := func(c byte) byte {
		if fold && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[1]) {
	case 's', 't', 'm', 'd':
		return 2
	}
	if len(s) >= 3 {
		switch c1, c2 := lower(s[1]), lower(s[2]); {
		case c1 == 'r' && c2 == 'e', c1 == 'v' && c2 == 'e', c1 == 'l' && c2 == 'l':
			return 3
		}
	}
	return 0
}

// splitGPT2 implements GPT-2's expression:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func splitGPT2(s string) int {
	if n := contraction(s, false); n > 0 {
		return n
	}
	r, c, n := next(s)
	start := 0
	if r == ' ' && n < len(s) {
		if c1 := classAt(s, n); c1 != classSpace {
			start, c = n, uint8(c1)
		}
	}
	if c != classSpace {
		// ' ?\p{L}+', ' ?\p{N}+' or ' ?[^\s\p{L}\p{N}]+'.
		return skipClass(s, start, c)
	}
	return splitSpaces(s)
}

// splitSpaces matches '\s+(?!\S)|\s+' at the start of s, which starts with a space
// character: a run of spaces followed by a non-space gives back its last space (which
// then prefixes the next word), unless the run is one character long.
func splitSpaces(s string) int {
	i, last := 0, 0
	for i < len(s) {
		_, c, n := next(s[i:])
		if c != classSpace {
			break
		}
		last = i
		i += n
	}
	if i < len(s) && last > 0 {
		return last
	}
	return i
}

// splitLlama3 implements Llama 3's expression (tokenizer.ggml.pre "llama-bpe"):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitLlama3(s string) int { return splitLlama3Digits(s, 3) }

// splitQwen2 implements Qwen2's expression, Llama 3's with one digit per word:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitQwen2(s string) int { return splitLlama3Digits(s, 1) }

// splitLlama3Digits is splitLlama3 with \p{N}{1,maxDigits}.
func splitLlama3Digits(s string, maxDigits int) int {
	if n := contraction(s, true); n > 0 {
		return n
	}
	r, c, n := next(s)
	// '[^\r\n\p{L}\p{N}]?\p{L}+'
	if r != '\r' && r != '\n' && c != classNumber {
		if c == classLetter || classAt(s, n) == classLetter {
			return skipClass(s, n, classLetter)
		}
	}
	// '\p{N}{1,3}'
	if c == classNumber {
		i := n
		for d := 1; d < maxDigits && i < len(s); d++ {
			_, ci, ni := next(s[i:])
			if ci != classNumber {
				break
			}
			i += ni
		}
		return i
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	start := 0
	if r == ' ' && n < len(s) && classAt(s, n) == classOther {
		start, c = n, classOther
	}
	if c == classOther {
		i := skipClass(s, start, classOther)
		for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
			i++
		}
		return i
	}
	// '\s*[\r\n]+': the run of spaces up to its last line break, if it has one.
	i, lastBreak := 0, 0
	for i < len(s) {
		r, c, n := next(s[i:])
		if c != classSpace {
			break
		}
		i += n
		if r == '\r' || r == '\n' {
			lastBreak = i
		}
	}
	if lastBreak > 0 {
		return lastBreak
	}
	return splitSpaces(s)
}
