package kernels

import (
	"encoding/binary"
	"math"

	"squeeze/runtime/gguf"
)

// Q8_0 (ggml block_q8_0): blocks of 32 values, 34 bytes each: an f16 scale d, then 32
// int8 values q; value j is q[j]*d.
const q8_0BlockBytes = 2 + 32

func init() {
	f := &format{dequant: dequantQ8_0Ref, quantize: quantizeQ8_0, dotRows: dotRowsQ8_0Ref, prepare: prepareQ8}
	formats[gguf.TypeQ8_0] = f
	addReinit(func() { installQ8_0(f) })
}

// f16At reads the little-endian f16 at b[0:2] as a float32.
func blockF16(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

func dequantQ8_0Ref(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[b*q8_0BlockBytes : (b+1)*q8_0BlockBytes]
		d := blockF16(blk)
		out := dst[b*32 : (b+1)*32]
		for j := range out {
			out[j] = float32(int8(blk[2+j])) * d
		}
	}
}

// quantizeQ8_0 follows ggml's reference quantizer: d = amax/127, q = round(x/d) with
// halves away from zero, d stored as f16.
func quantizeQ8_0(dst []byte, src []float32) {
	for b := 0; b < len(src)/32; b++ {
		x := src[b*32 : (b+1)*32]
		blk := dst[b*q8_0BlockBytes : (b+1)*q8_0BlockBytes]
		var amax float32
		for _, v := range x {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		for j, v := range x {
			p := v * id
			blk[2+j] = byte(int8(math.Round(float64(p))))
		}
	}
}

// dotRowsQ8_0Ref is the reference decode product against the 8-bit activation:
// dst[r] = Σ_b d_w(r,b)·d_x(b)·Σ_j q_w[j]·q_x[j], with the integer sum exact.
func dotRowsQ8_0Ref(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q8_0BlockBytes
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var s float32
		for b := 0; b < nb; b++ {
			blk := row[b*q8_0BlockBytes : (b+1)*q8_0BlockBytes]
			xq := a.Q8[b*32 : (b+1)*32]
			var id int32
			for j, v := range xq {
				id += int32(int8(blk[2+j])) * int32(v)
			}
			s += float32(id) * (blockF16(blk) * a.Q8Scale[b])
		}
		dst[r] = s
	}
}
