package kernels

import (
	"encoding/binary"
	"math"

	"squeeze/runtime/gguf"
)

func init() {
	formats[gguf.TypeF32] = &format{quantize: quantizeF32}
	formats[gguf.TypeF16] = &format{quantize: quantizeF16}
	formats[gguf.TypeBF16] = &format{quantize: quantizeBF16}
	addReinit(func() {
		f32, f16, bf16 := formats[gguf.TypeF32], formats[gguf.TypeF16], formats[gguf.TypeBF16]
		f32.dequant, f32.dotRows = dequantF32, dotRowsGeneric(dequantF32)
		f16.dequant, f16.dotRows = dequantF16, dotRowsGeneric(dequantF16)
		bf16.dequant, bf16.dotRows = dequantBF16, dotRowsGeneric(dequantBF16)
		floatFast() // replaces them with SIMD versions where cpuHas allows
	})
}

// dotRowsGeneric builds a reference dotRows from a dequantizer: decode a row, then dot.
func dotRowsGeneric(dequant func(dst []float32, src []byte)) func(dst []float32, w []byte, rowBytes int, a *Activation) {
	return func(dst []float32, w []byte, rowBytes int, a *Activation) {
		row := make([]float32, len(a.F32))
		for r := range dst {
			dequant(row, w[r*rowBytes:(r+1)*rowBytes])
			dst[r] = dotRef(row, a.F32)
		}
	}
}

func dotRef(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func dequantF32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func quantizeF32(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

func dequantF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func quantizeF16(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
	}
}

// F16ToF32 converts an IEEE 754 half-precision value to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f && mant == 0: // Inf
		return math.Float32frombits(sign | 0x7f800000)
	case exp == 0x1f: // NaN: quieted, payload kept (as VCVTPH2PS does)
		return math.Float32frombits(sign | 0x7fc00000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// subnormal: value = mant * 2^-24
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// F32ToF16 converts a float32 to the nearest half-precision value (ties to even),
// saturating to infinity. A NaN stays a NaN: quieted, with the top of its payload kept
// (as VCVTPS2PH does).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rem := mant & (1<<shift - 1)
		m := mant >> shift
		if rem > half || (rem == half && m&1 == 1) {
			m++
		}
		return sign | uint16(m)
	}
	m := mant >> 13
	rem := mant & 0x1fff
	h := uint32(e)<<10 | m
	if rem > 0x1000 || (rem == 0x1000 && m&1 == 1) {
		h++ // may carry into the exponent, which is the correct rounding
	}
	return sign | uint16(h)
}

func dequantBF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func quantizeBF16(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
	}
}

// BF16ToF32 converts a bfloat16 value (the top half of a float32) to float32 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts a float32 to the nearest bfloat16 (ties to even). A NaN stays a
// NaN (quieted).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1 // may carry into the exponent (up to Inf): correct rounding
	return uint16(b >> 16)
}
