package tokenizer

import (
	"unicode/utf8"
)

// Decoder decodes a stream of token ids into text as they arrive, for printing generated
// tokens one by one. A token that ends inside a UTF-8 sequence (byte tokens, or
// byte-level BPE pieces that split a character) is held back until the sequence
// completes. For ids whose decoded text is valid UTF-8, the concatenation of everything
// Add and Flush return equals Decode of all the ids. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	t       *Tokenizer
	pending []byte // bytes of an incomplete UTF-8 sequence
	strip   bool   // the next piece loses a leading space ("llama" space prefix)
	out     []byte
}

// NewDecoder returns a Decoder at the start of a text.
func (t *Tokenizer) NewDecoder() *Decoder {
	return &Decoder{t: t, strip: t.spacePrefix}
}

// Add decodes id and returns the text that is now complete, possibly "". Control tokens
// and ids outside the vocabulary add nothing. Bytes that cannot start or continue a
// valid UTF-8 sequence come out as U+FFFD, one per byte.
func (d *Decoder) Add(id int32) string {
	piece, special, ok := d.t.decodePiece(id, false)
	if !ok {
		return ""
	}
	if d.strip && piece != "" {
		if piece[0] == ' ' {
			piece = piece[1:]
		}
		d.strip = false
	}
	if special {
		d.strip = d.t.spacePrefix
	}
	d.pending = append(d.pending, piece...)
	return d.emit(false)
}

// Flush returns the bytes held back, an incomplete UTF-8 sequence written as U+FFFD
// per byte, and resets the Decoder to the start of a new text.
func (d *Decoder) Flush() string {
	s := d.emit(true)
	d.strip = d.t.spacePrefix
	return s
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
