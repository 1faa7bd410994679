package model

import (
	"errors"
	"fmt"
	"math"

	"squeeze/runtime/gguf"
)

// Errors for models this package cannot run. Load wraps one of them with the name of the
// key or tensor at fault.
var (
	// ErrArchitecture means general.architecture names a model family this package does
	// not implement.
	ErrArchitecture = errors.New("model: unsupported architecture")
	// ErrMetadata means a hyperparameter is missing from the GGUF metadata or has an
	// impossible value.
	ErrMetadata = errors.New("model: bad or missing hyperparameter")
	// ErrTensor means a weight tensor is missing, has the wrong shape or an unsupported
	// type.
	ErrTensor = errors.New("model: bad or missing tensor")
)

// Architectures lists the values of general.architecture that Load accepts.
var Architectures = []string{"llama", "qwen2"}

// Config holds a model's hyperparameters, read from the GGUF metadata.
type Config struct {
	// Arch is general.architecture: "llama" or "qwen2".
	Arch string
	// Layers is the number of transformer blocks.
	Layers int
	// Dim is the width of the residual stream (embedding_length).
	Dim int
	// FFN is the hidden width of the SwiGLU feed-forward block.
	FFN int
	// Heads and KVHeads are the numbers of query and key/value heads; every group of
	// Heads/KVHeads query heads shares one key/value head.
	Heads, KVHeads int
	// HeadDim is the length of one head's query, key and value vectors.
	HeadDim int
	// Vocab is the number of tokens (rows of token_embd.weight).
	Vocab int
	// ContextLength is the context the model was trained for. Caches may be longer.
	ContextLength int
	// NormEps is the RMSNorm epsilon.
	NormEps float32
	// RopeBase is the RoPE base frequency (theta).
	RopeBase float64
	// RopeDim is how many leading elements of each head RoPE rotates (usually HeadDim).
	RopeDim int
	// RopeScale multiplies positions before rotation: 1 / the linear scaling factor.
	RopeScale float64
	// RopeFreqFactors reports that the file has rope_freqs.weight, per-pair divisors of
	// the RoPE frequencies (Llama 3.1's long-context scaling).
	RopeFreqFactors bool
	// NeoX selects GPT-NeoX-style RoPE, which pairs element i with i+RopeDim/2; otherwise
	// adjacent elements (2i, 2i+1) are rotated together.
	NeoX bool
	// QKVBias reports whether the query, key and value projections have biases (qwen2).
	QKVBias bool
	// TiedOutput reports that the file has no output.weight, so the LM head reuses
	// token_embd.weight.
	TiedOutput bool
}

// QDim is the length of one token's concatenated query heads.
func (c *Config) QDim() int { return c.Heads * c.HeadDim }

// KVDim is the length of one token's concatenated key (or value) heads.
func (c *Config) KVDim() int { return c.KVHeads * c.HeadDim }

// metadata is what configFrom reads: a GGUF file's key-value lookup.
type metadata func(key string) (gguf.Value, bool)

// configFrom reads the hyperparameters of an architecture from GGUF metadata. The
// vocabulary size and TiedOutput come from the tensors and are set by the loader.
func configFrom(get metadata) (Config, error) {
	var c Config
	v, ok := get(gguf.KeyArchitecture)
	if !ok {
		return c, fmt.Errorf("%w: %s is missing", ErrMetadata, gguf.KeyArchitecture)
	}
	arch, ok := v.AsString()
	if !ok {
		return c, fmt.Errorf("%w: %s is a %v, not a string", ErrMetadata, gguf.KeyArchitecture, v.Type)
	}
	c.Arch = arch
	switch arch {
	case "llama":
	case "qwen2":
		c.NeoX, c.QKVBias = true, true
	default:
		return c, fmt.Errorf("%w: %q (supported: %v)", ErrArchitecture, arch, Architectures)
	}
	r := reader{get: get, prefix: arch + "."}
	c.Layers = r.int("block_count", 0)
	c.Dim = r.int("embedding_length", 0)
	c.FFN = r.int("feed_forward_length", 0)
	c.Heads = r.int("attention.head_count", 0)
	c.KVHeads = r.int("attention.head_count_kv", c.Heads)
	c.ContextLength = r.int("context_length", 0)
	if r.err != nil {
		return c, r.err
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"block_count", c.Layers}, {"embedding_length", c.Dim}, {"feed_forward_length", c.FFN}, {"attention.head_count", c.Heads}, {"attention.head_count_kv", c.KVHeads}, {"context_length", c.ContextLength}} {
		if p.v <= 0 {
			return c, fmt.Errorf("%w: %s%s is %d, want > 0", ErrMetadata, r.prefix, p.name, p.v)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return c, fmt.Errorf("%w: %d query heads are not a multiple of %d key/value heads", ErrMetadata, c.Heads, c.KVHeads)
	}
	if c.Dim%c.Heads != 0 && !r.has("attention.key_length") {
		return c, fmt.Errorf("%w: embedding_length %d is not a multiple of %d heads", ErrMetadata, c.Dim, c.Heads)
	}
	c.HeadDim = r.int("attention.key_length", c.Dim/c.Heads)
	if vl := r.int("attention.value_length", c.HeadDim); vl != c.HeadDim {
		return c, fmt.Errorf("%w: %sattention.value_length %d differs from key_length %d", ErrMetadata, r.prefix, vl, c.HeadDim)
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return c, fmt.Errorf("%w: head dimension %d, want a positive even number", ErrMetadata, c.HeadDim)
	}
	c.NormEps = float32(r.float("attention.layer_norm_rms_epsilon", 1e-5))
	c.RopeBase = r.float("rope.freq_base", 10000)
	c.RopeDim = r.int("rope.dimension_count", c.HeadDim)
	c.RopeScale = 1
	if f := r.float("rope.scale_linear", 0); f != 0 {
		c.RopeScale = 1 / f
	}
	if r.has("rope.scaling.type") {
		switch t := r.string("rope.scaling.type"); t {
		case "none", "":
		case "linear":
			if f := r.float("rope.scaling.factor", 0); f != 0 {
				c.RopeScale = 1 / f
			}
		default:
			if r.err == nil {
				return c, fmt.Errorf("%w: %srope.scaling.type %q (supported: none, linear)", ErrMetadata, r.prefix, t)
			}
		}
	}
	if r.err != nil {
		return c, r.err
	}
	if c.RopeDim <= 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0 {
		return c, fmt.Errorf("%w: %srope.dimension_count %d, want an even number from 2 to the head dimension %d", ErrMetadata, r.prefix, c.RopeDim, c.HeadDim)
	}
	if !(c.RopeBase > 0) || math.IsInf(c.RopeBase, 0) {
		return c, fmt.Errorf("%w: %srope.freq_base %v", ErrMetadata, r.prefix, c.RopeBase)
	}
	if !(c.RopeScale > 0) || math.IsInf(c.RopeScale, 0) {
		return c, fmt.Errorf("%w: %sRoPE scaling factor gives position scale %v", ErrMetadata, r.prefix, c.RopeScale)
	}
	if !(c.NormEps >= 0) {
		return c, fmt.Errorf("%w: %sattention.layer_norm_rms_epsilon %v", ErrMetadata, r.prefix, c.NormEps)
	}
	return c, nil
}

// reader reads typed metadata values under one key prefix, keeping the first error.
type reader struct {
	get    metadata
	prefix string
	err    error
}

func (r *reader) has(key string) bool {
	_, ok := r.get(r.prefix + key)
	return ok
}

func (r *reader) fail(key string, v gguf.Value, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s%s is %v (%v), want %s", ErrMetadata, r.prefix, key, v, v.Type, want)
	}
}

func (r *reader) int(key string, def int) int {
	v, ok := r.get(r.prefix + key)
	if !ok {
		return def
	}
	n, ok := v.AsUint()
	if !ok || n > math.MaxInt32 {
		r.fail(key, v, "a non-negative integer")
		return def
	}
	return int(n)
}

func (r *reader) float(key string, def float64) float64 {
	v, ok := r.get(r.prefix + key)
	if !ok {
		return def
	}
	if x, ok := v.AsFloat(); ok {
		return x
	}
	if n, ok := v.AsInt(); ok {
		return float64(n)
	}
	r.fail(key, v, "a number")
	return def
}

func (r *reader) string(key string) string {
	v, ok := r.get(r.prefix + key)
	if !ok {
		return ""
	}
	s, ok := v.AsString()
	if !ok {
		r.fail(key, v, "a string")
	}
	return s
}
