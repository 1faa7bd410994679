package kernels

import "squeeze/runtime/gguf"

// Q5_K super-block (176 bytes, 256 values): f16 d, f16 dmin, 12 bytes of packed 6-bit
// scales and minimums (as Q4_K), 32 bytes qh of fifth bits, 128 bytes of nibbles laid
// out as in Q4_K. Value i of sub-block j (byte l = i%32 of nibble group j/2) takes its
// fifth bit from bit j of qh[l]. Value = d*sc[j]*q - dmin*m[j], q in 0..31.
const q5KBytes = 176

func init() {
	formats[gguf.TypeQ5_K] = &format{quantize: quantizeQ5K}
	addReinit(func() {
		f := formats[gguf.TypeQ5_K]
		f.dequant, f.dotRows, f.prepare = dequantQ5K, dotRowsQ5KRef, prepareQ8K
		q5KFast(f) // SIMD versions where cpuHas allows
	})
}

// dequantQ5K is the reference decoder.
func dequantQ5K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*q5KBytes : (b+1)*q5KBytes]
		y := dst[b*qkK : (b+1)*qkK]
		d, dmin := halfAt(blk[0:]), halfAt(blk[2:])
		sc, m := scaleMinK4(blk[4:16])
		qh, qs := blk[16:48], blk[48:176]
		for g := 0; g < 4; g++ {
			d1, m1 := d*float32(sc[2*g]), dmin*float32(m[2*g])
			d2, m2 := d*float32(sc[2*g+1]), dmin*float32(m[2*g+1])
			lo, hi := y[64*g:64*g+32], y[64*g+32:64*g+64]
			for l, v := range qs[32*g : 32*g+32] {
				h := qh[l] >> (2 * g)
				lo[l] = float32(d1*float32(v&0xf|h&1<<4)) - m1 // rounded product, as dequantQ4K
				hi[l] = float32(d2*float32(v>>4|h&2<<3)) - m2
			}
		}
	}
}

// quantizeQ5K is the reference encoder (quantizeAffineK with 5-bit values).
func quantizeQ5K(dst []byte, src []float32) {
	var q [qkK]uint8
	for b := 0; b < len(src)/qkK; b++ {
		blk := dst[b*q5KBytes : (b+1)*q5KBytes]
		quantizeAffineK(blk[0:16], &q, src[b*qkK:(b+1)*qkK], 31)
		qh, qs := blk[16:48], blk[48:176]
		clear(qh)
		for g := 0; g < 4; g++ {
			for l := 0; l < 32; l++ {
				lo, hi := q[64*g+l], q[64*g+32+l]
				qs[32*g+l] = lo&0xf | hi<<4
				qh[l] |= (lo>>4)<<(2*g) | (hi>>4)<<(2*g+1)
			}
		}
	}
}

// dotRowsQ5KRef is the reference product against the Q8_K activation (as dotRowsQ4KRef).
func dotRowsQ5KRef(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q5KBytes
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var sum float32
		for b := 0; b < nb; b++ {
			blk := row[b*q5KBytes : (b+1)*q5KBytes]
			sc, m := scaleMinK4(blk[4:16])
			qh := blk[16:48]
			x := a.Q8K[b*qkK : (b+1)*qkK]
			var sumi int32
			for g := 0; g < 4; g++ {
				xl, xh := x[64*g:64*g+32], x[64*g+32:64*g+64]
				var sl, sh int32
				for l, v := range blk[48+32*g : 80+32*g] {
					h := qh[l] >> (2 * g)
					sl += int32(v&0xf|h&1<<4) * int32(xl[l])
					sh += int32(v>>4|h&2<<3) * int32(xh[l])
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
