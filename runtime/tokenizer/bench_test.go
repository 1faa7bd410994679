package tokenizer

import (
	"testing"
)

// BenchmarkEncode encodes ../shared/eval/dev.txt with the gocode-22m tokenizer (MB/s of
// input text): "cold" empties the word cache before every pass, "warm" keeps it.
func BenchmarkEncode(b *testing.B) {
	tok := ggufTokenizer(b, "gocode-22m/gocode-22m.gguf")
	text, _ := devDocuments(b)
	for _, cold := range []bool{true, false} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				if cold {
					tok.bpe.mu.Lock()
					clear(tok.bpe.cache)
					tok.bpe.mu.Unlock()
				}
				n = len(tok.Encode(text, true))
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkEncodeSPM encodes dev.txt with the stories260k SentencePiece tokenizer (MB/s).
func BenchmarkEncodeSPM(b *testing.B) {
	tok := ggufTokenizer(b, "stories260k/stories260k.gguf")
	_, docs := devDocuments(b)
	text := docs[0]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text, true)
	}
}

// BenchmarkDecode decodes the ids of dev.txt (MB/s of output text).
func BenchmarkDecode(b *testing.B) {
	tok := ggufTokenizer(b, "gocode-22m/gocode-22m.gguf")
	text, _ := devDocuments(b)
	ids := tok.Encode(text, true)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Decode(ids)
	}
}
