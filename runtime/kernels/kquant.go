package kernels

import (
	"encoding/binary"
	"math"
)

// The K-quant formats (Q4_K, Q5_K, Q6_K) share a super-block of 256 values and are
// multiplied against an activation quantized once per vector as ggml's Q8_K: 256 int8
// values with one float scale, plus the int8 sum of every 16 values (Activation.Q8K*).
// The integer products of a super-block are exact, so the reference and the SIMD
// kernels differ only in the order of the float operations.

// qkK is the number of values in a K-quant super-block.
const qkK = 256

// prepareQ8K sets a.Q8K, a.Q8KScale and a.Q8KSum from a.F32 (whole super-blocks only).
// The slices are reused when their capacity suffices.
func prepareQ8K(a *Activation) {
	nb := len(a.F32) / qkK
	n := nb * qkK
	if cap(a.Q8K) < n {
		a.Q8K = make([]int8, n)
	}
	if cap(a.Q8KScale) < nb {
		a.Q8KScale = make([]float32, nb)
	}
	if cap(a.Q8KSum) < n/16 {
		a.Q8KSum = make([]int16, n/16)
	}
	a.Q8K, a.Q8KScale, a.Q8KSum = a.Q8K[:n], a.Q8KScale[:nb], a.Q8KSum[:n/16]
	quantizeQ8K(a.Q8K, a.Q8KScale, a.Q8KSum, a.F32[:n])
}

// quantizeQ8K quantizes len(x)/256 super-blocks of x; SIMD versions replace it where the
// CPU has them.
var quantizeQ8K = quantizeQ8KRef

// quantizeQ8KRef is the reference: per super-block d = amax/127, id = 1/d (0 when d is
// 0 or subnormal), q[j] = roundToEven(x[j]*id) computed in float32, and
// sum[k] = Σ q[16k:16k+16].
func quantizeQ8KRef(q []int8, scale []float32, sum []int16, x []float32) {
	for b := range scale {
		xb := x[b*qkK : (b+1)*qkK]
		qb := q[b*qkK : (b+1)*qkK]
		var amax float32
		for _, v := range xb {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d >= 0x1p-126 { // below the smallest normal float32, 1/d would overflow
			id = 1 / d
		}
		for j, v := range xb {
			qb[j] = int8(math.RoundToEven(float64(v * id)))
		}
		for k := 0; k < qkK/16; k++ {
			var s int16
			for _, v := range qb[16*k : 16*k+16] {
				s += int16(v)
			}
			sum[b*qkK/16+k] = s
		}
		scale[b] = d
	}
}

// scaleMinK4 unpacks the 12-byte scale field of Q4_K and Q5_K into the eight 6-bit
// scales sc and eight 6-bit minimums m of the super-block's sub-blocks of 32. Bytes
// 0-3 hold sc[0:4] in their low 6 bits, bytes 4-7 m[0:4]; bytes 8-11 hold the low 4 bits
// of sc[4:8] (low nibble) and m[4:8] (high nibble), whose top 2 bits sit in the top 2
// bits of bytes 0-3 (sc) and 4-7 (m).
func scaleMinK4(s []byte) (sc, m [8]uint8) {
	_ = s[11]
	for j := 0; j < 4; j++ {
		sc[j] = s[j] & 63
		m[j] = s[j+4] & 63
		sc[j+4] = s[j+8]&0xf | s[j]>>6<<4
		m[j+4] = s[j+8]>>4 | s[j+4]>>6<<4
	}
	return sc, m
}

// packScaleMinK4 is the inverse of scaleMinK4 (every value must be below 64).
func packScaleMinK4(s []byte, sc, m *[8]uint8) {
	_ = s[11]
	for j := 0; j < 4; j++ {
		s[j] = sc[j] | sc[j+4]>>4<<6
		s[j+4] = m[j] | m[j+4]>>4<<6
		s[j+8] = sc[j+4]&0xf | m[j+4]&0xf<<4
	}
}

// halfAt reads the little-endian half-precision value at b[0:2] as float32.
func halfAt(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// roundClamp rounds v to the nearest integer (halves away from zero) and clamps it to
// [lo, hi]; NaN gives lo.
func roundClamp(v float32, lo, hi int) int {
	if !(v >= float32(lo)) {
		return lo
	}
	if v >= float32(hi) {
		return hi
	}
	return int(math.Round(float64(v)))
}

// kquantMinScale returns the super-block scales of a Q4_K/Q5_K super-block: d for the
// sub-block scales and dmin for the minimums, both already rounded to f16, given the
// per-sub-block step sizes and (non-negative) minimums.
func kquantMinScale(scales, mins *[8]float32) (d, dmin uint16) {
	var ms, mm float32
	for j := range scales {
		ms = max(ms, scales[j])
		mm = max(mm, mins[j])
	}
	return F32ToF16(ms / 63), F32ToF16(mm / 63)
}

// quantizeAffineK encodes the 256 values of x as Q4_K/Q5_K parts: per sub-block of 32 the
// range [min(0, lo), hi] is mapped onto 0..qmax with a 6-bit scale and 6-bit minimum
// relative to the super-block's d and dmin. It writes the header (d, dmin, 12 scale
// bytes) to hdr[0:16] and the quantized values to q.
func quantizeAffineK(hdr []byte, q *[qkK]uint8, x []float32, qmax int) {
	var scales, mins [8]float32
	for j := 0; j < 8; j++ {
		lo, hi := float32(0), float32(0)
		for i, v := range x[32*j : 32*j+32] {
			if i == 0 || v > hi {
				hi = v
			}
			lo = min(lo, v)
		}
		hi = max(hi, lo)
		scales[j] = (hi - lo) / float32(qmax)
		mins[j] = -lo
	}
	dh, dminh := kquantMinScale(&scales, &mins)
	d, dmin := F16ToF32(dh), F16ToF32(dminh)
	var sc, m [8]uint8
	for j := 0; j < 8; j++ {
		if d > 0 {
			sc[j] = uint8(roundClamp(scales[j]/d, 0, 63))
		}
		if dmin > 0 {
			// Round the minimum up so the sub-block's lowest value stays representable.
			m[j] = uint8(min(63, int(math.Ceil(float64(mins[j]/dmin)))))
		}
		// The scale rounded down (or to zero) would clip the top of the range: use the
		// next step up when the range is not covered.
		if d > 0 && sc[j] < 63 && d*float32(sc[j])*float32(qmax)-dmin*float32(m[j]) < maxOf(x[32*j:32*j+32]) {
			sc[j]++
		}
	}
	binary.LittleEndian.PutUint16(hdr[0:], dh)
	binary.LittleEndian.PutUint16(hdr[2:], dminh)
	packScaleMinK4(hdr[4:16], &sc, &m)
	for j := 0; j < 8; j++ {
		ds, dm := d*float32(sc[j]), dmin*float32(m[j])
		var id float32
		if ds != 0 {
			id = 1 / ds
		}
		for i, v := range x[32*j : 32*j+32] {
			q[32*j+i] = uint8(roundClamp((v+dm)*id, 0, qmax))
		}
	}
}

func maxOf(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}
