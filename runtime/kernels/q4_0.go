package kernels

import (
	"encoding/binary"

	"squeeze/runtime/gguf"
)

// Q4_0 (ggml block_q4_0): blocks of 32 values, 18 bytes each: an f16 scale d, then 16
// bytes whose low nibbles are values 0..15 and high nibbles values 16..31; value j is
// (q[j]-8)*d.
const q4_0BlockBytes = 2 + 16

func init() {
	f := &format{dequant: dequantQ4_0Ref, quantize: quantizeQ4_0, dotRows: dotRowsQ4_0Ref, prepare: prepareQ8}
	formats[gguf.TypeQ4_0] = f
	addReinit(func() { installQ4_0(f) })
}

func dequantQ4_0Ref(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[b*q4_0BlockBytes : (b+1)*q4_0BlockBytes]
		d := blockF16(blk)
		out := dst[b*32 : (b+1)*32]
		for j, v := range blk[2:18] {
			out[j] = float32(int(v&15)-8) * d
			out[j+16] = float32(int(v>>4)-8) * d
		}
	}
}

// signedAbsMax returns the value of x with the largest magnitude (the first such).
func signedAbsMax(x []float32) float32 {
	var amax, m float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, m = a, v
		}
	}
	return m
}

// quantizeQ4_0 follows ggml's reference quantizer: d = m/-8 where m is the value of
// largest magnitude, q = min(15, trunc(x/d + 8.5)).
func quantizeQ4_0(dst []byte, src []float32) {
	for b := 0; b < len(src)/32; b++ {
		x := src[b*32 : (b+1)*32]
		blk := dst[b*q4_0BlockBytes : (b+1)*q4_0BlockBytes]
		d := signedAbsMax(x) / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		for j := range 16 {
			lo := min(15, uint8(int8(x[j]*id+8.5)))
			hi := min(15, uint8(int8(x[j+16]*id+8.5)))
			blk[2+j] = lo | hi<<4
		}
	}
}

// dotRowsQ4_0Ref is the reference decode product against the 8-bit activation:
// dst[r] = Σ_b d_w·d_x·(Σ_j q_w[j]·q_x[j] - 8·Σ_j q_x[j]), the integer part exact.
func dotRowsQ4_0Ref(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q4_0BlockBytes
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var s float32
		for b := 0; b < nb; b++ {
			blk := row[b*q4_0BlockBytes : (b+1)*q4_0BlockBytes]
			xq := a.Q8[b*32 : (b+1)*32]
			var id int32
			for j, v := range blk[2:18] {
				id += int32(v&15)*int32(xq[j]) + int32(v>>4)*int32(xq[j+16])
			}
			id -= 8 * a.Q8Sum[b]
			s += float32(id) * (blockF16(blk) * a.Q8Scale[b])
		}
		dst[r] = s
	}
}
