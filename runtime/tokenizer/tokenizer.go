package tokenizer

import (
	"fmt"
	"strings"
)

// eogTexts are token texts that end a generation in the chat templates llama.cpp knows
// (llama-vocab.cpp, special_eog_ids); like llama.cpp, such tokens are also made control
// tokens.
var eogTexts = map[string]bool{
	"<|eot_id|>":         true,
	"<|im_end|>":         true,
	"<|end|>":            true,
	"<|return|>":         true,
	"<|call|>":           true,
	"<end_of_turn>":      true,
	"<|endoftext|>":      true,
	"<|eom_id|>":         true,
	"<EOT>":              true,
	"_<EOT>":             true,
	"<|end_of_text|>":    true,
	"<end_of_utterance>": true,
}

// Tokenizer encodes text to token ids and decodes ids to text. Build one with New or
// FromGGUF. It is immutable (apart from an internal cache) and safe for concurrent use.
type Tokenizer struct {
	model  string
	pre    string
	tokens []string
	types  []TokenType
	// pieces holds the bytes each token decodes to (for control tokens, their text).
	pieces []string
	ids    map[string]int32
	eog    []bool

	bos, eos, unk int32
	addBOS        bool
	addEOS        bool
	spacePrefix   bool // "llama": "▁" before text at the start and after special tokens

	specials *specialMatcher
	spm      *spmModel
	bpe      *bpeModel
}

// New builds a tokenizer from v. It copies what it keeps, so v may be reused. An invalid
// vocabulary gives an error wrapping ErrInvalidVocab, an unknown model or pre-tokenizer
// one wrapping ErrUnsupported.
func New(v Vocab) (*Tokenizer, error) {
	if err := v.validate(); err != nil {
		return nil, err
	}
	t := &Tokenizer{
		model:  v.Model,
		tokens: append([]string(nil), v.Tokens...),
		types:  v.types(),
		ids:    make(map[string]int32, len(v.Tokens)),
		eog:    make([]bool, len(v.Tokens)),
		bos:    v.BOS,
		eos:    v.EOS,
		unk:    v.UNK,
		addBOS: v.AddBOS,
		addEOS: v.AddEOS,
	}
	for i, tok := range t.tokens {
		// As in llama.cpp, the last of several equal texts wins.
		t.ids[tok] = int32(i)
	}
	for i, tok := range t.tokens {
		if eogTexts[tok] {
			t.eog[i] = true
			t.types[i] = TypeControl
		}
	}
	for _, id := range []int32{v.EOS, v.EOT} {
		if id >= 0 {
			t.eog[id] = true
		}
	}

	var err error
	switch v.Model {
	case ModelLlama:
		t.spacePrefix = !v.NoSpacePrefix
		t.spm = newSPM(t, v.Scores)
	case ModelGPT2:
		t.pre = v.Pre
		if t.pre == "" || t.pre == "default" {
			t.pre = PreGPT2
		}
		split, ok := preTokenizers[t.pre]
		if !ok {
			return nil, fmt.Errorf("%w: pre-tokenizer %q", ErrUnsupported, v.Pre)
		}
		t.bpe, err = newBPE(t, v.Merges, split, t.pre == PreLlamaBPE)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: tokenizer model %q", ErrUnsupported, v.Model)
	}
	t.pieces = make([]string, len(t.tokens))
	for i, tok := range t.tokens {
		t.pieces[i] = t.piece(tok, t.types[i])
	}
	t.specials = newSpecialMatcher(t.tokens, t.types)
	return t, nil
}

// piece returns the bytes the token with text tok and type typ decodes to.
func (t *Tokenizer) piece(tok string, typ TokenType) string {
	switch typ {
	case TypeControl, TypeUserDefined, TypeUnknown:
		return tok
	case TypeByte:
		if b, ok := parseByteToken(tok); ok {
			return string([]byte{b})
		}
	}
	if t.bpe != nil {
		return unmapBytes(tok)
	}
	return strings.ReplaceAll(tok, spmSpace, " ")
}

// Encode returns the token ids of text. With addSpecial, BOS comes first and EOS last
// when the model asks for them (Vocab.AddBOS, Vocab.AddEOS). Control-token texts such
// as "<s>" in text are encoded as plain text; user-defined tokens are always matched.
// It is EncodeWithSpecials(text, addSpecial, false).
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	return t.EncodeWithSpecials(text, addSpecial, false)
}

// EncodeWithSpecials is Encode with a choice: with parseSpecial, text that spells a
// control or unknown token (such as "<|im_end|>") becomes that token, as llama.cpp's
// parse_special does; longer special tokens are matched first.
func (t *Tokenizer) EncodeWithSpecials(text string, addSpecial, parseSpecial bool) []int32 {
	out := make([]int32, 0, len(text)/3+2)
	if addSpecial && t.addBOS {
		out = append(out, t.bos)
	}
	frags := t.specials.split(text, parseSpecial)
	if frags == nil {
		if text != "" {
			out = t.encodeText(out, text, true)
		}
	} else {
		afterSpecial := true
		for _, f := range frags {
			if f.id >= 0 {
				out = append(out, f.id)
				afterSpecial = true
				continue
			}
			out = t.encodeText(out, text[f.start:f.end], afterSpecial)
			afterSpecial = false
		}
	}
	if addSpecial && t.addEOS {
		out = append(out, t.eos)
	}
	return out
}

// encodeText appends the ids of text, which holds no special tokens, to out.
// afterSpecial says whether text starts the input or follows a special token.
func (t *Tokenizer) encodeText(out []int32, text string, afterSpecial bool) []int32 {
	if t.spm != nil {
		return t.spm.encode(out, text, afterSpecial && t.spacePrefix)
	}
	return t.bpe.encode(out, text)
}

// Decode returns the text of ids. Control tokens (such as BOS and EOS) give nothing, ids
// outside the vocabulary are skipped, and for the "llama" model the space that encoding
// put before the text is removed. The result holds the exact bytes of the tokens and may
// be invalid UTF-8 when ids end inside a character.
func (t *Tokenizer) Decode(ids []int32) string {
	return t.DecodeWithSpecials(ids, false)
}

// DecodeWithSpecials is Decode with a choice: with renderSpecial, control tokens give
// their text (such as "<s>").
func (t *Tokenizer) DecodeWithSpecials(ids []int32, renderSpecial bool) string {
	var sb strings.Builder
	sb.Grow(3 * len(ids))
	strip := t.spacePrefix
	for _, id := range ids {
		piece, special, ok := t.decodePiece(id, renderSpecial)
		if !ok {
			continue
		}
		if strip && piece != "" {
			piece = strings.TrimPrefix(piece, " ")
			strip = false
		}
		if special {
			strip = t.spacePrefix
		}
		sb.WriteString(piece)
	}
	return sb.String()
}

// decodePiece returns the bytes id contributes to a decoded text and whether it is a
// special token after which a "llama" model put a new space prefix. ok is false for an
// id outside the vocabulary.
func (t *Tokenizer) decodePiece(id int32, renderSpecial bool) (piece string, special, ok bool) {
	if id < 0 || int(id) >= len(t.tokens) {
		return "", false, false
	}
	switch t.types[id] {
	case TypeControl:
		if !renderSpecial {
			return "", true, true
		}
		return t.pieces[id], true, true
	case TypeUserDefined:
		return t.pieces[id], true, true
	}
	return t.pieces[id], false, true
}

// TokenText returns the text of token id as the vocabulary stores it (for the "gpt2"
// model in byte-to-unicode form, "Ġthe"; for "llama" with "▁" for spaces), or "" for an
// id outside the vocabulary.
func (t *Tokenizer) TokenText(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Piece returns the bytes token id decodes to on its own: for control tokens their text,
// for byte tokens the byte, no space removed. It returns "" for an id outside the
// vocabulary.
func (t *Tokenizer) Piece(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.pieces[id]
}

// TokenID returns the id of the token whose vocabulary text is text.
func (t *Tokenizer) TokenID(text string) (int32, bool) {
	id, ok := t.ids[text]
	return id, ok
}

// Type returns the type of token id, or TypeUndefined for an id outside the vocabulary.
func (t *Tokenizer) Type(id int32) TokenType {
	if id < 0 || int(id) >= len(t.tokens) {
		return TypeUndefined
	}
	return t.types[id]
}

// BOS returns the beginning-of-sequence token id, -1 if the model has none.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the end-of-sequence token id, -1 if the model has none.
func (t *Tokenizer) EOS() int32 { return t.eos }

// AddBOS reports whether Encode with addSpecial puts BOS first.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// IsEOG reports whether id ends a generation: EOS, EOT, or a token whose text is one of
// the end-of-turn markers llama.cpp knows (<|im_end|>, <|eot_id|>, <|endoftext|>, ...).
func (t *Tokenizer) IsEOG(id int32) bool {
	return id >= 0 && int(id) < len(t.eog) && t.eog[id]
}

// VocabSize returns the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Model returns the tokenizer model, ModelLlama or ModelGPT2.
func (t *Tokenizer) Model() string { return t.model }

// Pre returns the pre-tokenizer of a "gpt2" tokenizer (PreGPT2 when the vocabulary named
// none), "" for "llama".
func (t *Tokenizer) Pre() string { return t.pre }
