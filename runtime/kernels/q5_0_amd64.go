//go:build amd64 && !purego

package kernels

// installQ5_0 installs the fastest Q5_0 kernels cpuHas allows.
func installQ5_0(f *format) {
	f.dequant, f.dotRows = dequantQ5_0Ref, dotRowsQ5_0Ref
	if cpuHas.AVX2FMA {
		f.dequant, f.dotRows = dequantQ5_0AVX2, dotRowsQ5_0AVX2
	}
	if cpuHas.AVX512VNNI {
		f.dotRows = dotRowsQ5_0VNNI
	}
}

// q5_0DotAVX2 computes, for r in [0, rows), with nb = rowBytes/22 blocks per
// row and row r at w + r*rowBytes (block b: f16 d at 22b, qh at 22b+2, nibbles at 22b+6):
//
//	dst[r] = Σ_b f16(d_rb)·xs[b] · Σ_j (q_rb[j]-16)·x[32b+j]
//
// where Σ_j (q_rb[j]-16)·x[32b+j] is computed as Σ_j q_rb[j]·x[32b+j] - 16·xsum[b] (xsum[b] must be
// Σ_j x[32b+j]). rowBytes must be a positive multiple of the block size.
//
//go:noescape
func q5_0DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q5_0DotVNNI computes what q5_0DotAVX2 does, with AVX-512 VNNI.
//
//go:noescape
func q5_0DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q5_0DotVNNI8 computes what q5_0DotVNNI does, eight rows at a time; rows must be a
// multiple of 8.
//
//go:noescape
func q5_0DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

func dotRowsQ5_0AVX2(dst []float32, w []byte, rowBytes int, a *Activation) {
	if q8Args(dst, w, rowBytes, q5_0BlockBytes, a) {
		q5_0DotAVX2(&dst[0], len(dst), &w[0], rowBytes, &a.Q8[0], &a.Q8Scale[0], &a.Q8Sum[0])
	}
}

func dotRowsQ5_0VNNI(dst []float32, w []byte, rowBytes int, a *Activation) {
	q8DotSplit(q5_0DotVNNI8, q5_0DotVNNI, dst, w, rowBytes, q5_0BlockBytes, a)
}

// q5_0DequantAVX2 decodes nb Q5_0 blocks: dst[32b+j] = float32(q_b[j]-16) * f16(d_b).
//
//go:noescape
func q5_0DequantAVX2(dst *float32, src *byte, nb int)

func dequantQ5_0AVX2(dst []float32, src []byte) {
	nb := len(dst) / 32
	if nb == 0 {
		return
	}
	_ = src[nb*q5_0BlockBytes-1]
	q5_0DequantAVX2(&dst[0], &src[0], nb)
}
