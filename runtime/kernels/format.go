package kernels

import (
	"fmt"

	"squeeze/runtime/gguf"
)

// format is how the kernels read one weight type. Reference (pure-Go) functions are
// installed by the type's file; faster ones replace them at init on CPUs that have them.
type format struct {
	// dequant decodes whole blocks: len(dst) elements from src.
	dequant func(dst []float32, src []byte)
	// quantize encodes whole blocks (tests and synthetic models use it).
	quantize func(dst []byte, src []float32)
	// dotRows sets dst[r] = dot(row r, x) for len(dst) rows stored back to back in w,
	// rowBytes bytes each. a carries x and whatever prepare derived from it.
	dotRows func(dst []float32, w []byte, rowBytes int, a *Activation)
	// prepare, if set, derives what dotRows needs from a.F32 (for example an 8-bit
	// quantized copy). MatMul calls it once per activation vector, before the rows are
	// split across threads.
	prepare func(a *Activation)
}

// Activation is one f32 activation vector and its derived forms for dotRows.
type Activation struct {
	F32 []float32
	// Q8 is F32 quantized to 8 bits in blocks of 32 values with one scale per block
	// (set by a format's prepare; nil otherwise).
	Q8      []int8
	Q8Scale []float32
	// Q8Sum holds, per block of 32, the sum of the block's int8 values (for formats
	// with per-block minimums). Set together with Q8.
	Q8Sum []int32
	// Q8K is F32 quantized to 8 bits for the K-quant formats (Q4_K, Q5_K, Q6_K), as ggml's
	// Q8_K: one scale per super-block of 256 values in Q8KScale, and in Q8KSum the sum of
	// the int8 values of every 16 (set by their prepare; nil otherwise).
	Q8K      []int8
	Q8KScale []float32
	Q8KSum   []int16
}

var formats = map[gguf.Type]*format{}

// Dequantize decodes len(dst) elements of type t from src with the reference decoder.
// len(dst) must be a whole number of t's blocks and src exactly their encoding.
func Dequantize(t gguf.Type, dst []float32, src []byte) error {
	f, err := lookup(t, len(dst), len(src))
	if err != nil {
		return err
	}
	f.dequant(dst, src)
	return nil
}

// Quantize encodes src as type t. len(src) must be a whole number of t's blocks.
// Tests and synthetic models use it; its rounding is simple, not llama.cpp's search.
func Quantize(t gguf.Type, src []float32) ([]byte, error) {
	n, err := t.RowBytes(len(src))
	if err != nil {
		return nil, fmt.Errorf("kernels: quantize: %w", err)
	}
	f, err := lookup(t, len(src), n)
	if err != nil {
		return nil, err
	}
	dst := make([]byte, n)
	f.quantize(dst, src)
	return dst, nil
}

func lookup(t gguf.Type, elems, bytes int) (*format, error) {
	f := formats[t]
	if f == nil {
		return nil, fmt.Errorf("kernels: weight type %v is not supported", t)
	}
	n, err := t.RowBytes(elems)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	if n != bytes {
		return nil, fmt.Errorf("kernels: %d elements of %v take %d bytes, have %d", elems, t, n, bytes)
	}
	return f, nil
}
