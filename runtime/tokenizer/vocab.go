package tokenizer

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error New and FromGGUF return wraps one of these.
var (
	// ErrInvalidVocab means the vocabulary is inconsistent: lengths that disagree, a
	// special token id out of range, a malformed merge, a missing required part.
	ErrInvalidVocab = errors.New("tokenizer: invalid vocabulary")
	// ErrUnsupported means the tokenizer model or pre-tokenizer is not one this package
	// implements. The error message names it.
	ErrUnsupported = errors.New("tokenizer: unsupported tokenizer")
)

// TokenType is the kind of a vocabulary entry, with the values of GGUF's
// tokenizer.ggml.token_type array (llama.cpp's llama_token_type).
type TokenType int32

// Token types.
const (
	TypeUndefined   TokenType = 0 // no type recorded; treated as Normal
	TypeNormal      TokenType = 1 // ordinary text piece
	TypeUnknown     TokenType = 2 // the unknown token, e.g. <unk>
	TypeControl     TokenType = 3 // control token, e.g. <s>, <|im_end|>: decodes to nothing by default
	TypeUserDefined TokenType = 4 // added token matched verbatim in the input text
	TypeUnused      TokenType = 5 // reserved slot; treated as Normal
	TypeByte        TokenType = 6 // byte-fallback token <0xNN> of the "llama" model
)

// Tokenizer model names, the values of tokenizer.ggml.model.
const (
	ModelLlama = "llama" // SentencePiece BPE with scores and byte fallback
	ModelGPT2  = "gpt2"  // byte-level BPE with merges
)

// Pre-tokenizer names, the values of tokenizer.ggml.pre this package accepts for the
// "gpt2" model. "" and "default" select PreGPT2. (llama.cpp's "default" instead chains
// four older expressions; current converters always name the pre-tokenizer.)
const (
	PreGPT2     = "gpt-2"     // GPT-2's word splitting
	PreLlamaBPE = "llama-bpe" // Llama 3: case-insensitive contractions, digits in groups of 1-3
	PreQwen2    = "qwen2"     // Qwen2: as Llama 3 but one digit per word
)

// Vocab is the tokenizer description of a model, as GGUF stores it. Token ids index
// Tokens; the ids of absent special tokens are -1. FromGGUF fills it from a file; tests and
// other formats can build one directly.
type Vocab struct {
	// Model is ModelLlama or ModelGPT2.
	Model string
	// Pre is the pre-tokenizer of the "gpt2" model (PreGPT2, PreLlamaBPE, PreQwen2, or ""
	// for PreGPT2). Ignored for "llama".
	Pre string
	// Tokens holds the text of each token. For "gpt2" it is in GPT-2's byte-to-unicode
	// form (a space is "Ġ"); for "llama" spaces are "▁".
	Tokens []string
	// Scores holds one score per token ("llama" merges the highest first). Nil means all 0.
	Scores []float32
	// Types holds one TokenType per token. Nil means: <0xNN> tokens of the "llama" model
	// are TypeByte, the BOS, EOS, EOT and PAD tokens TypeControl, UNK TypeUnknown, the rest
	// TypeNormal.
	Types []TokenType
	// Merges lists the "gpt2" merges, best first, each as the two parts joined by one
	// space ("Ġ t"). Required for "gpt2", ignored for "llama".
	Merges []string
	// BOS, EOS, UNK, PAD and EOT are special token ids, -1 when the model has none.
	// EOT (end of turn) is also an end-of-generation token.
	BOS, EOS, UNK, PAD, EOT int32
	// AddBOS and AddEOS say whether Encode with addSpecial puts BOS first and EOS last.
	AddBOS, AddEOS bool
	// NoSpacePrefix turns off the "▁" the "llama" model puts before the text
	// (tokenizer.ggml.add_space_prefix = false). Ignored for "gpt2".
	NoSpacePrefix bool
}

// validate checks the parts of v every model needs.
func (v *Vocab) validate() error {
	n := len(v.Tokens)
	if n == 0 {
		return fmt.Errorf("%w: no tokens", ErrInvalidVocab)
	}
	if n > 1<<30 {
		return fmt.Errorf("%w: %d tokens", ErrInvalidVocab, n)
	}
	if v.Scores != nil && len(v.Scores) != n {
		return fmt.Errorf("%w: %d scores for %d tokens", ErrInvalidVocab, len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) != n {
		return fmt.Errorf("%w: %d token types for %d tokens", ErrInvalidVocab, len(v.Types), n)
	}
	for _, s := range []struct {
		name string
		id   int32
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}, {"PAD", v.PAD}, {"EOT", v.EOT}} {
		if s.id < -1 || int(s.id) >= n {
			return fmt.Errorf("%w: %s id %d outside the %d-token vocabulary", ErrInvalidVocab, s.name, s.id, n)
		}
	}
	if v.AddBOS && v.BOS < 0 {
		return fmt.Errorf("%w: add BOS requested but there is no BOS token", ErrInvalidVocab)
	}
	if v.AddEOS && v.EOS < 0 {
		return fmt.Errorf("%w: add EOS requested but there is no EOS token", ErrInvalidVocab)
	}
	return nil
}

// types returns the token types of v, inferring them when v.Types is nil.
func (v *Vocab) types() []TokenType {
	types := make([]TokenType, len(v.Tokens))
	if v.Types != nil {
		copy(types, v.Types)
		return types
	}
	for i, tok := range v.Tokens {
		types[i] = TypeNormal
		if _, ok := parseByteToken(tok); ok && v.Model == ModelLlama {
			types[i] = TypeByte
		}
	}
	for _, id := range []int32{v.BOS, v.EOS, v.EOT, v.PAD} {
		if id >= 0 {
			types[id] = TypeControl
		}
	}
	if v.UNK >= 0 {
		types[v.UNK] = TypeUnknown
	}
	return types
}

// parseByteToken reports the byte a "<0xNN>" token stands for.
func parseByteToken(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(s[3])
	lo, ok2 := hexDigit(s[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
