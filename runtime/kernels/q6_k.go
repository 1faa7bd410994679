package kernels

import (
	"encoding/binary"
	"math"

	"squeeze/runtime/gguf"
)

// Q6_K super-block (210 bytes, 256 values): 128 bytes ql of low 4 bits, 64 bytes qh of
// high 2 bits, 16 int8 scales (one per 16 values), f16 d. Value = d*sc[i/16]*(q-32).
// Each half of 128 values uses 64 bytes of ql and 32 of qh: value l (l < 32) of its four
// quarters takes its low bits from ql[l] low nibble, ql[32+l] low, ql[l] high and
// ql[32+l] high, and its high bits from bits 0-1, 2-3, 4-5 and 6-7 of qh[l].
const q6KBytes = 210

func init() {
	formats[gguf.TypeQ6_K] = &format{quantize: quantizeQ6K}
	addReinit(func() {
		f := formats[gguf.TypeQ6_K]
		f.dequant, f.dotRows, f.prepare = dequantQ6K, dotRowsQ6KRef, prepareQ8K
		q6KFast(f) // SIMD versions where cpuHas allows
	})
}

// unpackQ6K expands ql (128 bytes) and qh (64 bytes) into the 256 unsigned 6-bit values.
func unpackQ6K(q *[qkK]uint8, ql, qh []byte) {
	_, _ = ql[127], qh[63]
	for h := 0; h < 2; h++ {
		l4, h2, y := ql[64*h:64*h+64], qh[32*h:32*h+32], q[128*h:128*h+128]
		for l := 0; l < 32; l++ {
			hb := h2[l]
			y[l] = l4[l]&0xf | hb&3<<4
			y[32+l] = l4[32+l]&0xf | hb>>2&3<<4
			y[64+l] = l4[l]>>4 | hb>>4&3<<4
			y[96+l] = l4[32+l]>>4 | hb>>6<<4
		}
	}
}

// dequantQ6K is the reference decoder.
func dequantQ6K(dst []float32, src []byte) {
	var q [qkK]uint8
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*q6KBytes : (b+1)*q6KBytes]
		y := dst[b*qkK : (b+1)*qkK]
		unpackQ6K(&q, blk[0:128], blk[128:192])
		d := halfAt(blk[208:])
		for k := 0; k < 16; k++ {
			s := d * float32(int8(blk[192+k]))
			for i := 16 * k; i < 16*k+16; i++ {
				y[i] = s * float32(int(q[i])-32)
			}
		}
	}
}

// quantizeQ6K is the reference encoder: per 16 values the step is max|x|/31, the steps
// are quantized to int8 against d = max step/127, and values to -32..31.
func quantizeQ6K(dst []byte, src []float32) {
	var q [qkK]uint8
	for b := 0; b < len(src)/qkK; b++ {
		blk := dst[b*q6KBytes : (b+1)*q6KBytes]
		x := src[b*qkK : (b+1)*qkK]
		var steps [16]float32
		var smax float32
		for k := range steps {
			var amax float32
			for _, v := range x[16*k : 16*k+16] {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			steps[k] = amax / 31
			smax = max(smax, steps[k])
		}
		dh := F32ToF16(smax / 127)
		d := F16ToF32(dh)
		for k := range steps {
			var sc int
			if d > 0 {
				sc = roundClamp(steps[k]/d, 0, 127)
			}
			blk[192+k] = byte(int8(sc))
			s := d * float32(sc)
			var id float32
			if s != 0 {
				id = 1 / s
			}
			for i := 16 * k; i < 16*k+16; i++ {
				q[i] = uint8(roundClamp(x[i]*id, -32, 31) + 32)
			}
		}
		binary.LittleEndian.PutUint16(blk[208:], dh)
		ql, qh := blk[0:128], blk[128:192]
		clear(qh)
		for h := 0; h < 2; h++ {
			y := q[128*h : 128*h+128]
			for l := 0; l < 32; l++ {
				ql[64*h+l] = y[l]&0xf | y[64+l]<<4
				ql[64*h+32+l] = y[32+l]&0xf | y[96+l]<<4
				qh[32*h+l] = y[l]>>4 | y[32+l]>>4<<2 | y[64+l]>>4<<4 | y[96+l]>>4<<6
			}
		}
	}
}

// dotRowsQ6KRef is the reference product against the Q8_K activation: per super-block
// the exact integer sum Σ_k sc[k]·(Σ q·x8 - 32·Σ x8) over the 16 groups of 16, scaled by
// d and the activation scale.
func dotRowsQ6KRef(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q6KBytes
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var sum float32
		for b := 0; b < nb; b++ {
			blk := row[b*q6KBytes : (b+1)*q6KBytes]
			x, xsum := a.Q8K[b*qkK:(b+1)*qkK], a.Q8KSum[b*16:(b+1)*16]
			var sumi int32
			for h := 0; h < 2; h++ {
				ql, qh, xh := blk[64*h:64*h+64], blk[128+32*h:160+32*h], x[128*h:128*h+128]
				var s [8]int32 // Σ q·x8 of the half's groups of 16
				for l := 0; l < 32; l++ {
					hb, k := qh[l], l/16
					s[k] += int32(ql[l]&0xf|hb&3<<4) * int32(xh[l])
					s[k+2] += int32(ql[32+l]&0xf|hb>>2&3<<4) * int32(xh[32+l])
					s[k+4] += int32(ql[l]>>4|hb>>4&3<<4) * int32(xh[64+l])
					s[k+6] += int32(ql[32+l]>>4|hb>>6<<4) * int32(xh[96+l])
				}
				for k, v := range s {
					sumi += int32(int8(blk[192+8*h+k])) * (v - 32*int32(xsum[8*h+k]))
				}
			}
			sum += halfAt(blk[208:]) * a.Q8KScale[b] * float32(sumi)
		}
		dst[r] = sum
	}
}
