package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"squeeze/runtime/gguf"
	"squeeze/runtime/testfiles"
)

// fuzzTokenizers returns the tokenizers the fuzz targets exercise: synthetic byte-level
// vocabularies for the three pre-tokenizers, and the gocode-demo and stories260k
// tokenizers when their files are present (fuzzing must not skip without them).
func fuzzTokenizers(f *testing.F) map[string]*Tokenizer {
	toks := map[string]*Tokenizer{}
	merges := []string{"_ _", "e r", "_ t", "t h", "i n", "1 2", "é _", "\xe4 \xb8"}
	for _, pre := range []string{PreGPT2, PreLlamaBPE, PreQwen2} {
		toks[pre] = mustNew(f, byteLevelVocab(pre, merges, []string{"<s>", "<|im_end|>", "<tool>"}, "<tool>"))
	}
	toks["spm"] = mustNew(f, spmVocab([]string{"▁", "h", "i", "▁h", "hi", "▁hi"}, []float32{0, 0, 0, -3, -1, -2}))
	for name, rel := range map[string]string{"gocode-demo": "gocode-demo/gocode-demo.gguf", "stories260k": "stories260k/stories260k.gguf"} {
		path := filepath.Join(testfiles.Root(f), "..", "shared", "models", rel)
		if _, err := os.Stat(path); err != nil {
			continue // optional seeds
		}
		gf, err := gguf.Open(path)
		if err != nil {
			f.Fatalf("open %s: %v", rel, err)
		}
		tok, err := FromGGUF(gf)
		gf.Close()
		if err != nil {
			f.Fatalf("tokenizer of %s: %v", rel, err)
		}
		toks[name] = tok
	}
	return toks
}

var fuzzSeeds = []string{
	"", " ", "hello world", "package main\n\nfunc main() {\n\tprintln(\"hi\")\n}\n",
	"héllo 世界 🙂", "IT'S 12345 don't", "  \n\t  x", "<s>hi<|im_end|><tool>", "\xff\xfe\x80",
	"a\u00a0b\u2028c", "½⁶٣", "▁x",
}

// FuzzEncodeDecode checks that encoding never panics and that decode(encode(x)) == x for
// any bytes, except a literal "▁" with SentencePiece (which cannot tell it from a space).
func FuzzEncodeDecode(f *testing.F) {
	toks := fuzzTokenizers(f)
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, tok := range toks {
			ids := tok.Encode(s, true)
			for _, id := range ids {
				if id < 0 || int(id) >= tok.VocabSize() {
					t.Fatalf("%s: id %d outside the vocabulary", name, id)
				}
			}
			_ = tok.EncodeWithSpecials(s, true, true)
			if tok.Model() == ModelLlama && strings.Contains(s, spmSpace) {
				continue
			}
			if got := tok.Decode(ids); got != s {
				t.Errorf("%s: decode(encode(%q)) = %q", name, s, got)
			}
		}
	})
}

// FuzzDecoder feeds arbitrary id sequences to the streaming decoder and checks that
// every output is valid UTF-8 and that all outputs together are the pieces of the
// tokens (control tokens and ids outside the vocabulary dropped), each byte outside a
// valid UTF-8 sequence replaced by U+FFFD.
func FuzzDecoder(f *testing.F) {
	toks := fuzzTokenizers(f)
	f.Add([]byte{1, 2, 3, 200, 201})
	f.Add([]byte("\x00\x01\x02\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for name, tok := range toks {
			var ids []int32
			for i := 0; i+1 < len(raw); i += 2 {
				// Mostly ids inside the vocabulary, a few outside.
				ids = append(ids, int32(int(raw[i])<<8|int(raw[i+1]))%int32(tok.VocabSize()+3)-1)
			}
			d := tok.NewDecoder()
			var sb strings.Builder
			for _, id := range ids {
				s := d.Add(id)
				if !utf8.ValidString(s) {
					t.Fatalf("%s: Add(%d) returned invalid UTF-8 %q", name, id, s)
				}
				sb.WriteString(s)
			}
			sb.WriteString(d.Flush())
			var raw strings.Builder
			for _, id := range ids {
				if tok.Type(id) != TypeControl {
					raw.WriteString(tok.Piece(id))
				}
			}
			if want := string([]rune(raw.String())); sb.String() != want {
				t.Errorf("%s: streamed %q, want %q", name, sb.String(), want)
			}
		}
	})
}
