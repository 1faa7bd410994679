//go:build amd64 && !purego

package kernels

// installQ8_0 installs the fastest Q8_0 kernels cpuHas allows.
func installQ8_0(f *format) {
	f.dequant, f.dotRows = dequantQ8_0Ref, dotRowsQ8_0Ref
	if cpuHas.AVX2FMA {
		f.dequant, f.dotRows = dequantQ8_0AVX2, dotRowsQ8_0AVX2
	}
	if cpuHas.AVX512VNNI {
		f.dotRows = dotRowsQ8_0VNNI
	}
}

// q8_0DotAVX2 computes, for r in [0, rows), with nb = rowBytes/34 blocks per row and
// row r at w + r*rowBytes (block b: f16 d at 34b, int8 q at 34b+2):
//
//	dst[r] = Σ_b f16(d_rb)·xs[b] · Σ_j q_rb[j]·x[32b+j]
//
// rowBytes must be a positive multiple of 34 and x in [-127, 127].
//
//go:noescape
func q8_0DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32)

// q8_0DotVNNI computes what q8_0DotAVX2 does, with AVX-512 VNNI; xsum[b] must be
// Σ_j x[32b+j].
//
//go:noescape
func q8_0DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q8_0DotVNNI8 computes what q8_0DotVNNI does, eight rows at a time; rows must be a
// multiple of 8.
//
//go:noescape
func q8_0DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q8_0DequantAVX2 decodes nb Q8_0 blocks: dst[32b+j] = float32(q_b[j]) * f16(d_b).
//
//go:noescape
func q8_0DequantAVX2(dst *float32, src *byte, nb int)

func dequantQ8_0AVX2(dst []float32, src []byte) {
	nb := len(dst) / 32
	if nb == 0 {
		return
	}
	_ = src[nb*q8_0BlockBytes-1]
	q8_0DequantAVX2(&dst[0], &src[0], nb)
}

// q8Args checks the operands of a Q8-activation dotRows (panicking, like an index out
// of range, on sizes NewMatrix would have refused) and reports whether there is work;
// with zero-length rows it sets dst to zeros.
func q8Args(dst []float32, w []byte, rowBytes, blockBytes int, a *Activation) bool {
	if len(dst) == 0 {
		return false
	}
	nb := rowBytes / blockBytes
	if nb*blockBytes != rowBytes {
		// the assembly walks whole blocks up to rowBytes and would read past the row
		panic("kernels: row size is not a whole number of blocks")
	}
	if nb == 0 {
		clear(dst)
		return false
	}
	_, _, _, _ = w[len(dst)*rowBytes-1], a.Q8[nb*32-1], a.Q8Scale[nb-1], a.Q8Sum[nb-1]
	return true
}

func dotRowsQ8_0AVX2(dst []float32, w []byte, rowBytes int, a *Activation) {
	if q8Args(dst, w, rowBytes, q8_0BlockBytes, a) {
		q8_0DotAVX2(&dst[0], len(dst), &w[0], rowBytes, &a.Q8[0], &a.Q8Scale[0])
	}
}

func dotRowsQ8_0VNNI(dst []float32, w []byte, rowBytes int, a *Activation) {
	q8DotSplit(q8_0DotVNNI8, q8_0DotVNNI, dst, w, rowBytes, q8_0BlockBytes, a)
}

// q8Kernel is the signature of the assembly decode products over a Q8 activation.
type q8Kernel func(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)

// q8DotSplit runs k8 (eight rows at a time) over the whole groups of eight rows and k
// over the rest.
func q8DotSplit(k8, k q8Kernel, dst []float32, w []byte, rowBytes, blockBytes int, a *Activation) {
	if !q8Args(dst, w, rowBytes, blockBytes, a) {
		return
	}
	if n8 := len(dst) &^ 7; n8 > 0 {
		k8(&dst[0], n8, &w[0], rowBytes, &a.Q8[0], &a.Q8Scale[0], &a.Q8Sum[0])
		dst, w = dst[n8:], w[n8*rowBytes:]
		if len(dst) == 0 {
			return
		}
	}
	k(&dst[0], len(dst), &w[0], rowBytes, &a.Q8[0], &a.Q8Scale[0], &a.Q8Sum[0])
}
