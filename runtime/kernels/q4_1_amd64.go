//go:build amd64 && !purego

package kernels

// installQ4_1 installs the fastest Q4_1 decode product cpuHas allows.
func installQ4_1(f *format) {
	f.dotRows = dotRowsQ4_1Ref
	if cpuHas.AVX2FMA {
		f.dotRows = dotRowsQ4_1AVX2
	}
	if cpuHas.AVX512VNNI {
		f.dotRows = dotRowsQ4_1VNNI
	}
}

// q4_1DotAVX2 computes, for r in [0, rows), with nb = rowBytes/20 blocks per row and
// row r at w + r*rowBytes (block b: f16 d at 20b, f16 m at 20b+2, nibbles at 20b+4):
//
//	dst[r] = Σ_b xs[b]·(f16(d_rb)·Σ_j q_rb[j]·x[32b+j] + f16(m_rb)·xsum[b])
//
// where xsum[b] must be Σ_j x[32b+j]. rowBytes must be a positive multiple of 20.
//
//go:noescape
func q4_1DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q4_1DotVNNI computes what q4_1DotAVX2 does, with AVX-512 VNNI.
//
//go:noescape
func q4_1DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q4_1DotVNNI8 computes what q4_1DotVNNI does, eight rows at a time; rows must be a
// multiple of 8.
//
//go:noescape
func q4_1DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

func dotRowsQ4_1AVX2(dst []float32, w []byte, rowBytes int, a *Activation) {
	if q8Args(dst, w, rowBytes, q4_1BlockBytes, a) {
		q4_1DotAVX2(&dst[0], len(dst), &w[0], rowBytes, &a.Q8[0], &a.Q8Scale[0], &a.Q8Sum[0])
	}
}

func dotRowsQ4_1VNNI(dst []float32, w []byte, rowBytes int, a *Activation) {
	q8DotSplit(q4_1DotVNNI8, q4_1DotVNNI, dst, w, rowBytes, q4_1BlockBytes, a)
}
