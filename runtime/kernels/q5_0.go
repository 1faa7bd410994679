package kernels

import (
	"encoding/binary"

	"squeeze/runtime/gguf"
)

// Q5_0 (ggml block_q5_0): blocks of 32 values, 22 bytes each: f16 scale d, 4 bytes qh
// (little-endian; bit j is the fifth bit of value j), then 16 bytes of nibbles (low
// nibbles values 0..15, high nibbles 16..31); value j is (q[j]-16)*d.
const q5_0BlockBytes = 2 + 4 + 16

func init() {
	f := &format{dequant: dequantQ5_0Ref, quantize: quantizeQ5_0, dotRows: dotRowsQ5_0Ref, prepare: prepareQ8}
	formats[gguf.TypeQ5_0] = f
	addReinit(func() { installQ5_0(f) })
}

// q5Values decodes the 32 unsigned 5-bit values of a block from its qh word and its 16
// nibble bytes.
func q5Values(q *[32]uint8, qh uint32, qs []byte) {
	for j, v := range qs[:16] {
		q[j] = v&15 | uint8(qh>>j&1)<<4
		q[j+16] = v>>4 | uint8(qh>>(j+16)&1)<<4
	}
}

func dequantQ5_0Ref(dst []float32, src []byte) {
	var q [32]uint8
	for b := 0; b < len(dst)/32; b++ {
		blk := src[b*q5_0BlockBytes : (b+1)*q5_0BlockBytes]
		d := blockF16(blk)
		q5Values(&q, binary.LittleEndian.Uint32(blk[2:]), blk[6:22])
		out := dst[b*32 : (b+1)*32]
		for j, v := range q {
			out[j] = float32(int(v)-16) * d
		}
	}
}

// packQ5 stores 32 unsigned 5-bit values as qh (4 bytes) and 16 nibble bytes.
func packQ5(dst []byte, q *[32]uint8) {
	var qh uint32
	for j := range 16 {
		dst[4+j] = q[j]&15 | q[j+16]<<4
		qh |= uint32(q[j]>>4)<<j | uint32(q[j+16]>>4)<<(j+16)
	}
	binary.LittleEndian.PutUint32(dst, qh)
}

// quantizeQ5_0 follows ggml's reference quantizer: d = m/-16 where m is the value of
// largest magnitude, q = min(31, trunc(x/d + 16.5)).
func quantizeQ5_0(dst []byte, src []float32) {
	var q [32]uint8
	for b := 0; b < len(src)/32; b++ {
		x := src[b*32 : (b+1)*32]
		blk := dst[b*q5_0BlockBytes : (b+1)*q5_0BlockBytes]
		d := signedAbsMax(x) / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		for j, v := range x {
			q[j] = min(31, uint8(int8(v*id+16.5)))
		}
		packQ5(blk[2:], &q)
	}
}

// dotRowsQ5_0Ref is the reference decode product against the 8-bit activation:
// dst[r] = Σ_b d_w·d_x·(Σ_j q_w[j]·q_x[j] - 16·Σ_j q_x[j]), the integer part exact.
func dotRowsQ5_0Ref(dst []float32, w []byte, rowBytes int, a *Activation) {
	nb := rowBytes / q5_0BlockBytes
	var q [32]uint8
	for r := range dst {
		row := w[r*rowBytes : (r+1)*rowBytes]
		var s float32
		for b := 0; b < nb; b++ {
			blk := row[b*q5_0BlockBytes : (b+1)*q5_0BlockBytes]
			q5Values(&q, binary.LittleEndian.Uint32(blk[2:]), blk[6:22])
			xq := a.Q8[b*32 : (b+1)*32]
			var id int32
			for j, v := range q {
				id += int32(v) * int32(xq[j])
			}
			id -= 16 * a.Q8Sum[b]
			s += float32(id) * (blockF16(blk) * a.Q8Scale[b])
		}
		dst[r] = s
	}
}
