package kernels

import "squeeze/runtime/gguf"

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
}

var formats = map[gguf.Type]*format{}
