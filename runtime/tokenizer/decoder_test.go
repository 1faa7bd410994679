package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDecoderSplitsUTF8 streams text whose characters are split over byte tokens (a
// byte-level vocabulary without merges: one token per byte) and checks that nothing is
// emitted in the middle of a character.
func TestDecoderSplitsUTF8(t *testing.T) {
	tok := mustNew(t, byteLevelVocab(PreGPT2, []string{"x y"}, []string{"<s>"}))
	text := "héllo 世界 🙂"
	ids := tok.Encode(text, false)
	if len(ids) != len(text) {
		t.Fatalf("%d ids for %d bytes, want one per byte", len(ids), len(text))
	}
	d := tok.NewDecoder()
	var got []string
	for _, id := range ids {
		got = append(got, d.Add(id))
	}
	got = append(got, d.Flush())
	// Hand-computed: "é" is 2 bytes, "世" and "界" 3, "🙂" 4; each appears when its last
	// byte arrives.
	want := []string{"h", "", "é", "l", "l", "o", " ", "", "", "世", "", "", "界", " ", "", "", "", "🙂", ""}
	if !slices.Equal(got, want) {
		t.Errorf("Add outputs %q\nwant %q", got, want)
	}
}

// TestDecoderInvalid checks bytes that can never form a character, in the middle and at
// the end of the stream.
func TestDecoderInvalid(t *testing.T) {
	tok := mustNew(t, byteLevelVocab(PreGPT2, []string{"x y"}, []string{"<s>"}))
	for _, c := range []struct {
		name, bytes string
		want        string
	}{
		{"lone continuation", "a\x80b", "a\uFFFDb"},
		{"broken sequence", "\xe4\xb8a", "\uFFFD\uFFFDa"},
		{"truncated at end", "a\xf0\x9f\x99", "a\uFFFD\uFFFD\uFFFD"},
		{"ff", "\xff", "\uFFFD"},
		{"valid", "é🙂", "é🙂"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := tok.NewDecoder()
			var sb strings.Builder
			for _, id := range tok.Encode(c.bytes, false) {
				s := d.Add(id)
				if !utf8.ValidString(s) {
					t.Errorf("Add returned invalid UTF-8 %q", s)
				}
				sb.WriteString(s)
			}
			sb.WriteString(d.Flush())
			if sb.String() != c.want {
				t.Errorf("decoded %q, want %q", sb.String(), c.want)
			}
		})
	}
}

// TestDecoderContinues checks that the streaming decoder drops control tokens and keeps
// the "llama" space of the first token: its text continues the decoded prompt.
func TestDecoderContinues(t *testing.T) {
	tok := mustNew(t, spmVocab([]string{"▁", "h", "i", "hi", "▁hi"}, []float32{0, 0, 0, -1, -2}))
	ids := tok.EncodeWithSpecials("hi hi hi</s>", true, true)
	for k := 2; k <= len(ids); k++ {
		d := tok.NewDecoder()
		var sb strings.Builder
		sb.WriteString(tok.Decode(ids[:k]))
		for _, id := range ids[k:] {
			sb.WriteString(d.Add(id))
		}
		sb.WriteString(d.Flush())
		if sb.String() != "hi hi hi" {
			t.Errorf("prompt of %d ids, then streamed: %q, want %q", k, sb.String(), "hi hi hi")
		}
	}
	d := tok.NewDecoder()
	if got := d.Add(1) + d.Add(ids[1]) + d.Flush(); got != " hi" {
		t.Errorf("streamed <s> ▁hi: %q, want %q", got, " hi")
	}
	if got := d.Add(-1) + d.Add(1<<30) + d.Flush(); got != "" {
		t.Errorf("ids outside the vocabulary gave %q", got)
	}
}
