// Package model runs Llama-family transformers from GGUF files on the CPU: it reads the
// hyperparameters and weights of the "llama" and "qwen2" architectures, keeps a KV cache
// per sequence, and runs batched forward passes that produce logits and, on request, each
// layer's keys, values and hidden states.
//
// # Forward pass
//
// Forward runs a batch of tokens at the cache's next positions in one pass: every weight
// matrix is applied to all of the batch's tokens at once (kernels.MatMul), attention is
// causal inside the batch, and the batch's keys and values are appended to the cache.
// Prefill and decode are the same call with different batch sizes.
//
// Each block is pre-norm: x += Attention(RMSNorm(x)); x += SwiGLU(RMSNorm(x)). Attention
// rotates queries and keys with RoPE (adjacent pairs for "llama", NeoX halves for "qwen2"),
// shares each key/value head among Heads/KVHeads query heads, and scales scores by
// 1/sqrt(HeadDim). The LM head is output.weight, or token_embd.weight when the file has
// none (tied embeddings).
package model

import (
	"fmt"
	"math"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
)

// Model is a loaded transformer. Its weights stay in the GGUF file's memory mapping: the
// File passed to Load must stay open while the Model is used. A Model is read-only after
// Load and may serve many Caches from many goroutines, each Forward call with its own Pool
// and Cache.
type Model struct {
	// Config holds the hyperparameters.
	Config Config

	embed   *kernels.Matrix // Vocab x Dim
	layers  []layer
	outNorm []float32
	output  *kernels.Matrix // Vocab x Dim; embed when tied
	rope    *kernels.RoPE
	// invFreq[i] is the angle per position of RoPE pair i: RopeScale * RopeBase^(-2i/
	// RopeDim), divided by rope_freqs.weight[i] when the file has it (Llama 3.1 and later).
	invFreq []float64
	// ropeFactors is rope_freqs.weight, or nil.
	ropeFactors []float32
	// period is BlockPeriod: layer i's weights are those of layer i mod period.
	period int
	// greedy holds GreedyHead's 8-bit copy of the LM head, built on first use.
	greedy greedyTables
}

// layer is one transformer block's weights.
type layer struct {
	attnNorm   []float32
	wq, wk, wv *kernels.Matrix
	bq, bk, bv []float32 // nil without biases
	wo         *kernels.Matrix
	ffnNorm    []float32
	gate, up   *kernels.Matrix
	down       *kernels.Matrix
}

// Load builds the Model that f describes. It fails, naming the key or tensor, if the
// architecture is not one of Architectures, a hyperparameter is missing or impossible, or a
// weight tensor is missing, misshapen or of a type the kernels cannot read.
func Load(f *gguf.File) (*Model, error) {
	cfg, err := configFrom(f.Get)
	if err != nil {
		return nil, err
	}
	return build(cfg, f.Tensor)
}

// tensorSource returns a tensor's description and its encoded bytes.
type tensorSource func(name string) (*gguf.TensorInfo, []byte, error)

// build looks up and checks every weight of cfg's architecture.
func build(cfg Config, src tensorSource) (*Model, error) {
	m := &Model{Config: cfg}
	t := loader{src: src}

	// The vocabulary size comes from the embedding's shape.
	if info, _, err := src("token_embd.weight"); err == nil && len(info.Dims) == 2 {
		m.Config.Vocab = int(min(info.Dims[1], 1<<31-1))
	}
	cfg = m.Config
	if cfg.Vocab <= 0 {
		// Let matrix report the problem with its shape or presence.
		cfg.Vocab = 1
	}
	m.embed = t.matrix("token_embd.weight", cfg.Vocab, cfg.Dim)
	m.layers = make([]layer, cfg.Layers)
	for i := range m.layers {
		l := &m.layers[i]
		name := func(s string) string { return fmt.Sprintf("blk.%d.%s", i, s) }
		l.attnNorm = t.vector(name("attn_norm.weight"), cfg.Dim)
		l.wq = t.matrix(name("attn_q.weight"), cfg.QDim(), cfg.Dim)
		l.wk = t.matrix(name("attn_k.weight"), cfg.KVDim(), cfg.Dim)
		l.wv = t.matrix(name("attn_v.weight"), cfg.KVDim(), cfg.Dim)
		if cfg.QKVBias {
			l.bq = t.vector(name("attn_q.bias"), cfg.QDim())
			l.bk = t.vector(name("attn_k.bias"), cfg.KVDim())
			l.bv = t.vector(name("attn_v.bias"), cfg.KVDim())
		}
		l.wo = t.matrix(name("attn_output.weight"), cfg.Dim, cfg.QDim())
		l.ffnNorm = t.vector(name("ffn_norm.weight"), cfg.Dim)
		l.gate = t.matrix(name("ffn_gate.weight"), cfg.FFN, cfg.Dim)
		l.up = t.matrix(name("ffn_up.weight"), cfg.FFN, cfg.Dim)
		l.down = t.matrix(name("ffn_down.weight"), cfg.Dim, cfg.FFN)
	}
	m.outNorm = t.vector("output_norm.weight", cfg.Dim)
	if _, _, err := src("output.weight"); err == nil {
		m.output = t.matrix("output.weight", cfg.Vocab, cfg.Dim)
	} else {
		m.Config.TiedOutput = true
		m.output = m.embed
	}
	if _, _, err := src("rope_freqs.weight"); err == nil {
		m.ropeFactors = t.vector("rope_freqs.weight", cfg.RopeDim/2)
		m.Config.RopeFreqFactors = true
	}
	if t.err != nil {
		return nil, t.err
	}
	m.period = blockPeriod(m.layers)
	// A parameter-shared model's repeated layers are byte-identical copies in the file:
	// run them all from the first, so that decoding reads one copy (same numbers, a
	// third of the weight traffic for a block applied three times).
	for i := m.period; i < len(m.layers); i++ {
		m.layers[i] = m.layers[i%m.period]
	}
	m.rope = kernels.NewRoPE(cfg.RopeDim, cfg.RopeBase, cfg.RopeScale, cfg.NeoX)
	m.invFreq = make([]float64, cfg.RopeDim/2)
	for i := range m.invFreq {
		m.invFreq[i] = cfg.RopeScale * math.Pow(cfg.RopeBase, -float64(2*i)/float64(cfg.RopeDim))
		if m.ropeFactors != nil {
			if f := float64(m.ropeFactors[i]); f > 0 {
				m.invFreq[i] /= f
			} else {
				return nil, fmt.Errorf("%w: rope_freqs.weight[%d] is %v, want > 0", ErrTensor, i, f)
			}
		}
	}
	return m, nil
}

// loader checks tensors against their expected shapes, keeping the first error.
type loader struct {
	src tensorSource
	err error
}

// lookup returns the tensor name if its shape is dims (GGUF order: row width first).
func (t *loader) lookup(name string, dims ...int) (*gguf.TensorInfo, []byte) {
	if t.err != nil {
		return nil, nil
	}
	info, data, err := t.src(name)
	if err != nil {
		t.err = fmt.Errorf("%w: %s: %w", ErrTensor, name, err)
		return nil, nil
	}
	ok := len(info.Dims) >= len(dims)
	for i, d := range info.Dims {
		switch {
		case !ok:
		case i < len(dims):
			ok = d == uint64(dims[i])
		default:
			ok = d == 1 // trailing unit dimensions are harmless
		}
	}
	if !ok {
		t.err = fmt.Errorf("%w: %s has shape %v, want %v", ErrTensor, name, info.Dims, dims)
		return nil, nil
	}
	return info, data
}

func (t *loader) matrix(name string, rows, cols int) *kernels.Matrix {
	info, data := t.lookup(name, cols, rows)
	if info == nil {
		return nil
	}
	m, err := kernels.NewMatrix(info.Type, rows, cols, data)
	if err != nil {
		t.err = fmt.Errorf("%w: %s: %w", ErrTensor, name, err)
	}
	return m
}

// vector decodes a 1-D tensor (a norm weight or a bias) into a new slice.
func (t *loader) vector(name string, n int) []float32 {
	info, data := t.lookup(name, n)
	if info == nil {
		return nil
	}
	v := make([]float32, n)
	if err := kernels.Dequantize(info.Type, v, data); err != nil {
		t.err = fmt.Errorf("%w: %s: %w", ErrTensor, name, err)
		return nil
	}
	return v
}
