package tokenizer

import (
	"unicode/utf8"
)

// Decoder decodes a stream of token ids into text as they arrive, for printing generated
// tokens one by one. A token that ends inside a UTF-8 sequence (byte tokens, or
// byte-level BPE pieces that split a character) is held back until the sequence
// completes.
//
// A Decoder writes text that continues a prompt, as llama.cpp prints generated tokens:
// every token gives its whole piece, so for the "llama" model a first token "▁Once"
// gives " Once" (Decode, which decodes a text from its start, would drop that space).
// Thus for any prompt ids p that hold at least one text token, Decode(p) followed by
// everything a Decoder returns for ids g equals Decode(p ++ g), when that text is valid
// UTF-8. A Decoder is not safe for concurrent use.
type Decoder struct {
	t       *Tokenizer
	pending []byte // bytes of an incomplete UTF-8 sequence
	out     []byte
}

// NewDecoder returns a Decoder with nothing held back.
func (t *Tokenizer) NewDecoder() *Decoder {
	return &Decoder{t: t}
}

// Add decodes id and returns the text that is now complete, possibly "". Control tokens
// and ids outside the vocabulary add nothing. Bytes that cannot start or continue a
// valid UTF-8 sequence come out as U+FFFD, one per byte.
func (d *Decoder) Add(id int32) string {
	piece, _, ok := d.t.decodePiece(id, false)
	if !ok {
		return ""
	}
	d.pending = append(d.pending, piece...)
	return d.emit(false)
}

// Flush returns the bytes held back, an incomplete UTF-8 sequence written as U+FFFD
// per byte, and leaves the Decoder empty.
func (d *Decoder) Flush() string {
	return d.emit(true)
}

// emit returns the complete characters of d.pending and keeps an incomplete tail, or,
// with all, returns everything.
func (d *Decoder) emit(all bool) string {
	d.out = d.out[:0]
	p := d.pending
	i := 0
	for i < len(p) {
		if p[i] < utf8.RuneSelf {
			d.out = append(d.out, p[i])
			i++
			continue
		}
		if !all && !utf8.FullRune(p[i:]) {
			break // a valid prefix of a longer sequence: wait for the rest
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			d.out = utf8.AppendRune(d.out, utf8.RuneError)
		} else {
			d.out = append(d.out, p[i:i+n]...)
		}
		i += n
	}
	d.pending = append(d.pending[:0], p[i:]...)
	return string(d.out)
}
