// Package modeltest builds small synthetic GGUF models with random weights, for tests of
// the loader, the forward pass and everything above them. The files are valid inputs for
// model.Load (and, with Spec.Tokenizer, for tokenizer.FromGGUF); Spec's fields also make
// broken ones: missing tensors, wrong shapes, unknown architectures. Beside them: random
// token ids (Tokens), a float64 reference model.Prefix (DensePrefix) and runtime/chat's
// test templates (ChatTemplate). Package testmodel loads the models for tests above
// package model.
package modeltest

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
)

// Spec describes a synthetic model. Zero fields take the values of Tiny.
type Spec struct {
	// Arch is general.architecture, "llama" or "qwen2" (or anything, to test errors).
	// qwen2 models get attn_q/k/v biases.
	Arch string
	// Layers, Dim, FFN, Heads, KVHeads, Vocab and Context are the hyperparameters.
	Layers, Dim, FFN, Heads, KVHeads, Vocab, Context int
	// HeadDim, if set, is written as attention.key_length and value_length; otherwise the
	// head dimension is Dim/Heads.
	HeadDim int
	// RopeBase is rope.freq_base (0: the key is omitted, so readers use 10000).
	RopeBase float64
	// RopeDim, if set, is rope.dimension_count.
	RopeDim int
	// RopeLinear, if set, is a linear RoPE scaling factor (rope.scaling.type "linear").
	RopeLinear float64
	// RopeFactors adds rope_freqs.weight (Llama 3.1's per-pair frequency divisors) with
	// random factors from 1 to 8.
	RopeFactors bool
	// Weights is the type of the 2-D weights (F32 if zero; F16, Q8_0, ... need row widths
	// that are multiples of their block size). Norms and biases are always F32.
	Weights gguf.Type
	// Tied leaves out output.weight, so the LM head is the embedding.
	Tied bool
	// Tokenizer adds a SentencePiece vocabulary with byte fallback (tokenizer.ggml.model
	// "llama"): <unk>, <s>, </s>, the 256 byte tokens, then printable pieces up to Vocab.
	// Vocab must be at least 259.
	Tokenizer bool
	// BlockShare, if set, makes every layer's tensors copies of those of layer i mod
	// BlockShare: a parameter-shared decoder, as gocode-shared stores one. (The other
	// layers' weights are drawn all the same, so the remaining tensors do not change.)
	BlockShare int
	// Seed selects the random weights.
	Seed uint64
	// Omit lists tensors to leave out; Shapes replaces the dims of some tensors (their
	// data is sized to match). Both make broken files for error tests.
	Omit   []string
	Shapes map[string][]uint64
	// Meta adds metadata or replaces generated keys (a nil value removes a key).
	Meta map[string]any
}

// Tiny is a 2-layer model small enough for float64 reference checks: dim 64, 4 query
// heads sharing 2 key/value heads of 16, FFN 96, vocabulary 300.
var Tiny = Spec{Arch: "llama", Layers: 2, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 300, Context: 256}

func (s Spec) withDefaults() Spec {
	d := Tiny
	if s.Arch == "" {
		s.Arch = d.Arch
	}
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&s.Layers, d.Layers}, {&s.Dim, d.Dim}, {&s.FFN, d.FFN}, {&s.Heads, d.Heads},
		{&s.KVHeads, d.KVHeads}, {&s.Vocab, d.Vocab}, {&s.Context, d.Context},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if s.Weights == 0 {
		s.Weights = gguf.TypeF32
	}
	return s
}

// Build returns the GGUF file s describes.
func Build(s Spec) ([]byte, error) {
	s = s.withDefaults()
	hd := s.Dim / s.Heads
	if s.HeadDim != 0 {
		hd = s.HeadDim
	}
	w := gguf.NewWriter()
	meta := map[string]any{}
	var order []string
	add := func(key string, v any) {
		if _, dup := meta[key]; !dup {
			order = append(order, key)
		}
		meta[key] = v
	}
	a := s.Arch + "."
	add("general.architecture", s.Arch)
	add("general.name", "modeltest")
	add(a+"block_count", uint32(s.Layers))
	add(a+"embedding_length", uint32(s.Dim))
	add(a+"feed_forward_length", uint32(s.FFN))
	add(a+"attention.head_count", uint32(s.Heads))
	add(a+"attention.head_count_kv", uint32(s.KVHeads))
	add(a+"context_length", uint32(s.Context))
	add(a+"attention.layer_norm_rms_epsilon", float32(1e-5))
	if s.HeadDim != 0 {
		add(a+"attention.key_length", uint32(hd))
		add(a+"attention.value_length", uint32(hd))
	}
	if s.RopeBase != 0 {
		add(a+"rope.freq_base", float32(s.RopeBase))
	}
	if s.RopeDim != 0 {
		add(a+"rope.dimension_count", uint32(s.RopeDim))
	}
	if s.RopeLinear != 0 {
		add(a+"rope.scaling.type", "linear")
		add(a+"rope.scaling.factor", float32(s.RopeLinear))
	}
	if s.Tokenizer {
		if s.Vocab < 259 {
			return nil, fmt.Errorf("modeltest: a tokenizer needs a vocabulary of at least 259, have %d", s.Vocab)
		}
		voc := spmVocab(s.Vocab)
		for _, k := range slices.Sorted(maps.Keys(voc)) {
			add(k, voc[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Meta)) {
		add(k, s.Meta[k])
	}
	for _, k := range order {
		if meta[k] == nil {
			continue
		}
		if err := w.AddKV(k, meta[k]); err != nil {
			return nil, fmt.Errorf("modeltest: %w", err)
		}
	}

	rng := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	omit := map[string]bool{}
	for _, n := range s.Omit {
		omit[n] = true
	}
	type written struct {
		t    gguf.Type
		dims []uint64
		data []byte
	}
	layerTensors := map[string]written{} // of the first BlockShare layers
	tensor := func(name string, t gguf.Type, dims []uint64, gen func(i int) float32) error {
		if omit[name] {
			return nil
		}
		if d, ok := s.Shapes[name]; ok {
			dims = d
		}
		n := 1
		for _, d := range dims {
			n *= int(d)
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = gen(i)
		}
		data, err := kernels.Quantize(t, x)
		if err != nil {
			return fmt.Errorf("modeltest: %s: %w", name, err)
		}
		var layer int
		var rest string
		if k, _ := fmt.Sscanf(name, "blk.%d.%s", &layer, &rest); k == 2 && s.BlockShare > 0 {
			if layer < s.BlockShare {
				layerTensors[name] = written{t, dims, data}
			} else if src, ok := layerTensors[fmt.Sprintf("blk.%d.%s", layer%s.BlockShare, rest)]; ok {
				t, dims, data = src.t, src.dims, src.data
			}
		}
		if err := w.AddTensor(name, t, dims, data); err != nil {
			return fmt.Errorf("modeltest: %w", err)
		}
		return nil
	}
	// Weights are uniform with the variance of 1/cols, which keeps activations O(1).
	matrix := func(name string, rows, cols int) error {
		scale := float32(1.7 / math.Sqrt(float64(cols)))
		return tensor(name, s.Weights, []uint64{uint64(cols), uint64(rows)}, func(int) float32 {
			return scale * (2*rng.Float32() - 1)
		})
	}
	vector := func(name string, n int, center, spread float32) error {
		return tensor(name, gguf.TypeF32, []uint64{uint64(n)}, func(int) float32 {
			return center + spread*(2*rng.Float32()-1)
		})
	}
	qDim, kvDim := s.Heads*hd, s.KVHeads*hd
	errs := []error{
		tensor("token_embd.weight", s.Weights, []uint64{uint64(s.Dim), uint64(s.Vocab)}, func(int) float32 {
			return 2*rng.Float32() - 1
		}),
	}
	for i := range s.Layers {
		b := fmt.Sprintf("blk.%d.", i)
		errs = append(errs,
			vector(b+"attn_norm.weight", s.Dim, 1, 0.2),
			matrix(b+"attn_q.weight", qDim, s.Dim),
			matrix(b+"attn_k.weight", kvDim, s.Dim),
			matrix(b+"attn_v.weight", kvDim, s.Dim),
		)
		if s.Arch == "qwen2" {
			errs = append(errs,
				vector(b+"attn_q.bias", qDim, 0, 0.5),
				vector(b+"attn_k.bias", kvDim, 0, 0.5),
				vector(b+"attn_v.bias", kvDim, 0, 0.5),
			)
		}
		errs = append(errs,
			matrix(b+"attn_output.weight", s.Dim, qDim),
			vector(b+"ffn_norm.weight", s.Dim, 1, 0.2),
			matrix(b+"ffn_gate.weight", s.FFN, s.Dim),
			matrix(b+"ffn_up.weight", s.FFN, s.Dim),
			matrix(b+"ffn_down.weight", s.Dim, s.FFN),
		)
	}
	errs = append(errs, vector("output_norm.weight", s.Dim, 1, 0.2))
	if s.RopeFactors {
		ropeDim := hd
		if s.RopeDim != 0 {
			ropeDim = s.RopeDim
		}
		errs = append(errs, vector("rope_freqs.weight", ropeDim/2, 4.5, 3.5))
	}
	if !s.Tied {
		errs = append(errs, matrix("output.weight", s.Vocab, s.Dim))
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("modeltest: %w", err)
	}
	return buf.Bytes(), nil
}

// Write writes the model s describes to path.
func Write(path string, s Spec) error {
	data, err := Build(s)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// Open writes the model s describes into a temporary directory of tb and opens it; the
// file is closed when the test ends.
func Open(tb testing.TB, s Spec) *gguf.File {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "model.gguf")
	if err := Write(path, s); err != nil {
		tb.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// spmVocab returns tokenizer.ggml.* metadata for a SentencePiece vocabulary of n tokens
// with byte fallback: <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF>, then printable pieces.
func spmVocab(n int) map[string]any {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3} // unknown, control, control
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6) // byte
	}
	seen := map[string]bool{}
	var pieces []string
	for c := byte(0x21); c < 0x7f; c++ {
		pieces = append(pieces, "\u2581"+string(c), string(c))
	}
	for c := byte('a'); c <= 'z'; c++ {
		for d := byte('a'); d <= 'z'; d++ {
			pieces = append(pieces, string([]byte{c, d}), "\u2581"+string([]byte{c, d}))
		}
	}
	pieces = append([]string{"\u2581"}, pieces...)
	for i := 0; len(tokens) < n; i++ {
		p := fmt.Sprintf("<extra_%d>", i)
		if i < len(pieces) {
			p = pieces[i]
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		tokens = append(tokens, p)
		types = append(types, 1) // normal
	}
	scores := make([]float32, len(tokens))
	for i := range scores {
		scores[i] = -float32(i)
	}
	return map[string]any{
		"tokenizer.ggml.model":            "llama",
		"tokenizer.ggml.tokens":           tokens,
		"tokenizer.ggml.scores":           scores,
		"tokenizer.ggml.token_type":       types,
		"tokenizer.ggml.unknown_token_id": uint32(0),
		"tokenizer.ggml.bos_token_id":     uint32(1),
		"tokenizer.ggml.eos_token_id":     uint32(2),
		"tokenizer.ggml.add_bos_token":    true,
		"tokenizer.ggml.add_eos_token":    false,
	}
}

// Tokens returns n random token ids below vocab, the same for the same seed.
func Tokens(n, vocab int, seed uint64) []int32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}
