package kernels

import (
	"encoding/binary"

	"squeeze/runtime/gguf"
)

// Q4_1 (ggml block_q4_1): blocks of 32 values, 20 bytes each: f16 scale d, f16 minimum
// m, then 16 bytes of nibbles (low nibbles values 0..15, high nibbles 16..31); value j is
// q[j]*d + m.
const q4_1BlockBytes = 2 + 2 + 16

func init() {
	f := &format{dequant: dequantQ4_1, quantize: quantizeQ4_1, dotRows: dotRowsQ4_1Ref, prepare: prepareQ8}
	formats[gguf.TypeQ4_1] = f
	addReinit(func() { installQ4_1(f) })
}

func dequantQ4_1(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[b*q4_1BlockBytes : (b+1)*q4_1BlockBytes]
		d, m := blockF16(blk), blockF16(blk[2:])
		out := dst[b*32 : (b+1)*32]
		for j, v := range blk[4:20] {
			out[j] = float32(v&15)*d + m
			out[j+16] = float32(v>>4)*d + m
		}
	}
}

// minMax returns the smallest and largest value of x (0, 0 for an empty x).
func minMax(x []float32) (lo, hi float32) {
	if len(x) == 0 {
		return 0, 0
	}
	lo, hi = x[0], x[0]
	for _, v := range x[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// quantizeQ4_1 follows ggml's reference quantizer: d = (max-min)/15, m = min,
// q = min(15, trunc((x-min)/d + 0.5)).
func quantizeQ4_1(dst []byte, src []float32) {
	for b := 0; b < len(src)/32; b++ {
		x := src[b*32 : (b+1)*32]
		blk := dst[b*q4_1BlockBytes : (b+1)*q4_1BlockBytes]
		lo, hi := minMax(x)
		d := (hi - lo) / 15
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		binary.LittleEndian.PutUint16(blk[2:], F32ToF16(lo))
		for j := range 16 {
			q0 := min(15, uint8(int8((x[j]-lo)*id+0.5)))
			q1 := min(15, uint8(int8((x[j+16]-lo)*id+0.5)))
			blk[4+j] = q0 | q1<<4
		}
	}
}

// dotRowsQ4_1Ref is the reference decode product against the 8-bit activation:
// dst[r] = Σ_b d_x·(d_w·Σ_j q_w[j]·q_x[j] + m_w·Σ_j q_x[j]).
func dotRowsQ4_1Ref(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q4_1BlockBytes
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var s float32
		for b := 0; b < nb; b++ {
			blk := row[b*q4_1BlockBytes : (b+1)*q4_1BlockBytes]
			xq := a.Q8[b*32 : (b+1)*32]
			var id int32
			for j, v := range blk[4:20] {
				id += int32(v&15)*int32(xq[j]) + int32(v>>4)*int32(xq[j+16])
			}
			s += (float32(id)*blockF16(blk) + float32(a.Q8Sum[b])*blockF16(blk[2:])) * a.Q8Scale[b]
		}
		dst[r] = s
	}
}
