package kernels

import (
	"squeeze/runtime/gguf"
)

// Q4_K super-block (144 bytes, 256 values): f16 d, f16 dmin, 12 bytes of packed 6-bit
// scales and minimums for 8 sub-blocks of 32 (scaleMinK4), then 128 bytes of nibbles.
// Nibble byte 32g+l holds value l of sub-block 2g in its low half and value l of
// sub-block 2g+1 in its high half. Value = d*sc[j]*q - dmin*m[j].
const q4KBytes = 144

func init() {
	formats[gguf.TypeQ4_K] = &format{quantize: quantizeQ4K}
	addReinit(func() {
		f := formats[gguf.TypeQ4_K]
		f.dequant, f.dotRows, f.prepare = dequantQ4K, dotRowsQ4KRef, prepareQ8K
		q4KFast(f) // SIMD versions where cpuHas allows
	})
}

// dequantQ4K is the reference decoder.
func dequantQ4K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*q4KBytes : (b+1)*q4KBytes]
		y := dst[b*qkK : (b+1)*qkK]
		d, dmin := halfAt(blk[0:]), halfAt(blk[2:])
		sc, m := scaleMinK4(blk[4:16])
		qs := blk[16:144]
		for g := 0; g < 4; g++ {
			d1, m1 := d*float32(sc[2*g]), dmin*float32(m[2*g])
			d2, m2 := d*float32(sc[2*g+1]), dmin*float32(m[2*g+1])
			lo, hi := y[64*g:64*g+32], y[64*g+32:64*g+64]
			// float32(...) rounds the product: the SIMD decoders multiply, then subtract.
			for l, v := range qs[32*g : 32*g+32] {
				lo[l] = float32(d1*float32(v&0xf)) - m1
				hi[l] = float32(d2*float32(v>>4)) - m2
			}
		}
	}
}

// quantizeQ4K is the reference encoder (quantizeAffineK with 4-bit values).
func quantizeQ4K(dst []byte, src []float32) {
	var q [qkK]uint8
	for b := 0; b < len(src)/qkK; b++ {
		blk := dst[b*q4KBytes : (b+1)*q4KBytes]
		quantizeAffineK(blk[0:16], &q, src[b*qkK:(b+1)*qkK], 15)
		for g := 0; g < 4; g++ {
			for l := 0; l < 32; l++ {
				blk[16+32*g+l] = q[64*g+l] | q[64*g+32+l]<<4
			}
		}
	}
}

// dotRowsQ4KRef is the reference product against the Q8_K activation: per super-block
// the exact integer sums Σ_j sc[j]·Σ q·x8 and Σ_j m[j]·Σ x8 (over the sub-blocks j of 32
// values) are scaled by d and dmin and the activation scale.
func dotRowsQ4KRef(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q4KBytes
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var sum float32
		for b := 0; b < nb; b++ {
			blk := row[b*q4KBytes : (b+1)*q4KBytes]
			sc, m := scaleMinK4(blk[4:16])
			x := a.Q8K[b*qkK : (b+1)*qkK]
			var sumi int32
			for g := 0; g < 4; g++ {
				xl, xh := x[64*g:64*g+32], x[64*g+32:64*g+64]
				var sl, sh int32
				for l, v := range blk[16+32*g : 48+32*g] {
					sl += int32(v&0xf) * int32(xl[l])
					sh += int32(v>>4) * int32(xh[l])
				}
				sumi += int32(sc[2*g])*sl + int32(sc[2*g+1])*sh
			}
			summ := minsDotK(&m, a.Q8KSum[b*16:(b+1)*16])
			d := halfAt(blk[0:]) * a.Q8KScale[b]
			dmin := halfAt(blk[2:]) * a.Q8KScale[b]
			sum += d*float32(sumi) - dmin*float32(summ)
		}
		dst[r] = sum
	}
}

// minsDotK returns Σ_j m[j]·(xsum[2j] + xsum[2j+1]): the minimums of the 8 sub-blocks of
// 32 against the activation's 16-value sums.
func minsDotK(m *[8]uint8, xsum []int16) int32 {
	_ = xsum[15]
	var s int32
	for j, v := range m {
		s += int32(v) * (int32(xsum[2*j]) + int32(xsum[2*j+1]))
	}
	return s
}
