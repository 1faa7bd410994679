package tokenizer

import (
	"errors"
	"fmt"

	"squeeze/runtime/gguf"
)

// GGUF metadata keys of the tokenizer (llama.cpp's gguf-py constants).
const (
	KeyModel          = "tokenizer.ggml.model"
	KeyPre            = "tokenizer.ggml.pre"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenType      = "tokenizer.ggml.token_type"
	KeyMerges         = "tokenizer.ggml.merges"
	KeyBOS            = "tokenizer.ggml.bos_token_id"
	KeyEOS            = "tokenizer.ggml.eos_token_id"
	KeyUNK            = "tokenizer.ggml.unknown_token_id"
	KeyPAD            = "tokenizer.ggml.padding_token_id"
	KeyEOT            = "tokenizer.ggml.eot_token_id"
	KeyAddBOS         = "tokenizer.ggml.add_bos_token"
	KeyAddEOS         = "tokenizer.ggml.add_eos_token"
	KeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
)

// FromGGUF builds the tokenizer a GGUF file describes. See ReadVocab for the keys it
// reads and their defaults.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := ReadVocab(f)
	if err != nil {
		return nil, err
	}
	return New(v)
}

// ReadVocab reads the tokenizer.ggml.* metadata of f into a Vocab. tokenizer.ggml.model
// and .tokens are required, and .merges for the "gpt2" model; a missing one gives an
// error wrapping gguf.ErrNotFound and ErrInvalidVocab. Defaults for absent optional keys
// follow llama.cpp: scores 0, types inferred (see Vocab.Types), pre-tokenizer "gpt-2";
// for "llama" BOS 1, EOS 2, UNK 0, add_bos true, add_space_prefix true; for "gpt2" no
// special tokens, add_bos true only with pre-tokenizer "llama-bpe"; add_eos false.
// A special token id outside the vocabulary is ignored (the default stays), as in
// llama.cpp. An unknown model gives an error wrapping ErrUnsupported.
func ReadVocab(f *gguf.File) (Vocab, error) {
	v := Vocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1, EOT: -1}
	var err error
	if v.Model, err = f.String(KeyModel); err != nil {
		return Vocab{}, required(err)
	}
	if v.Tokens, err = f.Strings(KeyTokens); err != nil {
		return Vocab{}, required(err)
	}
	if v.Pre, err = optional(f.String(KeyPre)); err != nil {
		return Vocab{}, err
	}
	if v.Scores, err = optional(f.Float32s(KeyScores)); err != nil {
		return Vocab{}, err
	}
	types, err := optional(f.Int32s(KeyTokenType))
	if err != nil {
		return Vocab{}, err
	}
	if types != nil {
		v.Types = make([]TokenType, len(types))
		for i, typ := range types {
			v.Types[i] = TokenType(typ)
		}
	}

	switch v.Model {
	case ModelLlama:
		v.BOS, v.EOS, v.UNK = 1, 2, 0
		v.AddBOS = true
		for _, id := range []*int32{&v.BOS, &v.EOS, &v.UNK} {
			if int(*id) >= len(v.Tokens) {
				*id = -1
			}
		}
	case ModelGPT2:
		if v.Merges, err = f.Strings(KeyMerges); err != nil {
			return Vocab{}, required(err)
		}
		v.AddBOS = v.Pre == PreLlamaBPE
	default:
		return Vocab{}, fmt.Errorf("%w: %s %q", ErrUnsupported, KeyModel, v.Model)
	}

	for _, s := range []struct {
		key string
		id  *int32
	}{{KeyBOS, &v.BOS}, {KeyEOS, &v.EOS}, {KeyUNK, &v.UNK}, {KeyPAD, &v.PAD}, {KeyEOT, &v.EOT}} {
		if !f.Has(s.key) {
			continue
		}
		id, err := f.Int(s.key)
		if err != nil {
			return Vocab{}, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
		}
		if 0 <= id && id < int64(len(v.Tokens)) {
			*s.id = int32(id)
		}
	}
	for _, s := range []struct {
		key string
		b   *bool
	}{{KeyAddBOS, &v.AddBOS}, {KeyAddEOS, &v.AddEOS}} {
		if !f.Has(s.key) {
			continue
		}
		if *s.b, err = f.Bool(s.key); err != nil {
			return Vocab{}, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
		}
	}
	if f.Has(KeyAddSpacePrefix) {
		add, err := f.Bool(KeyAddSpacePrefix)
		if err != nil {
			return Vocab{}, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
		}
		v.NoSpacePrefix = !add
	}
	// A model asking for a BOS or EOS it lacks gets none rather than an error.
	v.AddBOS = v.AddBOS && v.BOS >= 0
	v.AddEOS = v.AddEOS && v.EOS >= 0
	return v, nil
}

// required wraps the error of reading a required key.
func required(err error) error {
	return fmt.Errorf("%w: %w", ErrInvalidVocab, err)
}

// optional turns the absence of an optional key into its zero value.
func optional[T any](x T, err error) (T, error) {
	if errors.Is(err, gguf.ErrNotFound) {
		var zero T
		return zero, nil
	}
	if err != nil {
		return x, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
	}
	return x, nil
}
