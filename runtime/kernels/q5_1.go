package kernels

import (
	"encoding/binary"

	"squeeze/runtime/gguf"
)

// Q5_1 (ggml block_q5_1): blocks of 32 values, 24 bytes each: f16 scale d, f16 minimum
// m, 4 bytes qh (bit j is the fifth bit of value j), then 16 bytes of nibbles (low
// nibbles values 0..15, high nibbles 16..31); value j is q[j]*d + m.
const q5_1BlockBytes = 2 + 2 + 4 + 16

func init() {
	f := &format{dequant: dequantQ5_1, quantize: quantizeQ5_1, dotRows: dotRowsQ5_1Ref, prepare: prepareQ8}
	formats[gguf.TypeQ5_1] = f
	addReinit(func() { installQ5_1(f) })
}

func dequantQ5_1(dst []float32, src []byte) {
	var q [32]uint8
	for b := 0; b < len(dst)/32; b++ {
		blk := src[b*q5_1BlockBytes : (b+1)*q5_1BlockBytes]
		d, m := blockF16(blk), blockF16(blk[2:])
		q5Values(&q, binary.LittleEndian.Uint32(blk[4:]), blk[8:24])
		out := dst[b*32 : (b+1)*32]
		for j, v := range q {
			out[j] = float32(v)*d + m
		}
	}
}

// quantizeQ5_1 follows ggml's reference quantizer: d = (max-min)/31, m = min,
// q = trunc((x-min)/d + 0.5), clamped to 31.
func quantizeQ5_1(dst []byte, src []float32) {
	var q [32]uint8
	for b := 0; b < len(src)/32; b++ {
		x := src[b*32 : (b+1)*32]
		blk := dst[b*q5_1BlockBytes : (b+1)*q5_1BlockBytes]
		lo, hi := minMax(x)
		d := (hi - lo) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		binary.LittleEndian.PutUint16(blk[2:], F32ToF16(lo))
		for j, v := range x {
			q[j] = min(31, uint8(int8((v-lo)*id+0.5)))
		}
		packQ5(blk[4:], &q)
	}
}

// dotRowsQ5_1Ref is the reference decode product against the 8-bit activation:
// dst[r] = Σ_b d_x·(d_w·Σ_j q_w[j]·q_x[j] + m_w·Σ_j q_x[j]).
func dotRowsQ5_1Ref(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q5_1BlockBytes
	var q [32]uint8
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var s float32
		for b := 0; b < nb; b++ {
			blk := row[b*q5_1BlockBytes : (b+1)*q5_1BlockBytes]
			q5Values(&q, binary.LittleEndian.Uint32(blk[4:]), blk[8:24])
			xq := a.Q8[b*32 : (b+1)*32]
			var id int32
			for j, v := range q {
				id += int32(v) * int32(xq[j])
			}
			s += (float32(id)*blockF16(blk) + float32(a.Q8Sum[b])*blockF16(blk[2:])) * a.Q8Scale[b]
		}
		dst[r] = s
	}
}
