//go:build amd64 && !purego

package kernels

//go:generate go run q8_0_gen.go

// installQ4_0 installs the fastest Q4_0 kernels cpuHas allows.
func installQ4_0(f *format) {
	f.dequant, f.dotRows = dequantQ4_0Ref, dotRowsQ4_0Ref
	if cpuHas.AVX2FMA {
		f.dequant, f.dotRows = dequantQ4_0AVX2, dotRowsQ4_0AVX2
	}
	if cpuHas.AVX512VNNI {
		f.dotRows = dotRowsQ4_0VNNI
	}
}

// q4_0DotAVX2 computes, for r in [0, rows), with nb = rowBytes/18 blocks per
// row and row r at w + r*rowBytes (block b: f16 d at 18b, nibbles at 18b+2):
//
//	dst[r] = Σ_b f16(d_rb)·xs[b] · Σ_j (q_rb[j]-8)·x[32b+j]
//
// where Σ_j (q_rb[j]-8)·x[32b+j] is computed as Σ_j q_rb[j]·x[32b+j] - 8·xsum[b] (xsum[b] must be
// Σ_j x[32b+j]). rowBytes must be a positive multiple of the block size.
//
//go:noescape
func q4_0DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q4_0DotVNNI computes what q4_0DotAVX2 does, with AVX-512 VNNI.
//
//go:noescape
func q4_0DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q4_0DotVNNI8 computes what q4_0DotVNNI does, eight rows at a time; rows must be a
// multiple of 8.
//
//go:noescape
func q4_0DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

func dotRowsQ4_0AVX2(dst []float32, w []byte, rowBytes int, a *Activation) {
	if q8Args(dst, w, rowBytes, q4_0BlockBytes, a) {
		q4_0DotAVX2(&dst[0], len(dst), &w[0], rowBytes, &a.Q8[0], &a.Q8Scale[0], &a.Q8Sum[0])
	}
}

func dotRowsQ4_0VNNI(dst []float32, w []byte, rowBytes int, a *Activation) {
	q8DotSplit(q4_0DotVNNI8, q4_0DotVNNI, dst, w, rowBytes, q4_0BlockBytes, a)
}

// q4_0DequantAVX2 decodes nb Q4_0 blocks: dst[32b+j] = float32(q_b[j]-8) * f16(d_b).
//
//go:noescape
func q4_0DequantAVX2(dst *float32, src *byte, nb int)

func dequantQ4_0AVX2(dst []float32, src []byte) {
	nb := len(dst) / 32
	if nb == 0 {
		return
	}
	_ = src[nb*q4_0BlockBytes-1]
	q4_0DequantAVX2(&dst[0], &src[0], nb)
}
