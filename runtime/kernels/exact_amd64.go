//go:build amd64 && !purego

package kernels

import "unsafe"

//go:generate go run exact_gen.go

// The kernels below compute, for V activation vectors at once, the dots of count
// groups of 4 rows of f32 or f16 elements (row r of group g starting g*step + r*stride
// bytes after w):
//
//	out[v*ostride+g+r*rstride] = sum_{i<n} x[v*xstride+i] * row_gr[i]   (r < 4, v < V)
//
// with each (row, vector) sum accumulated and reduced exactly as dot4F32AVX512 and
// dot4F16AVX512 accumulate one row's: bitwise the same results as those kernels run
// once per vector, with each weight loaded once for all V vectors, and one call for
// all the groups. n is a multiple of 16.

// dot4x2F32ExactAVX512 is the kernel above for V = 2 and f32 rows.
//
//go:noescape
func dot4x2F32ExactAVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int, count int, step int)

// dot4x3F32ExactAVX512 is the kernel above for V = 3 and f32 rows.
//
//go:noescape
func dot4x3F32ExactAVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int, count int, step int)

// dot4x2F16ExactAVX512 is the kernel above for V = 2 and f16 rows.
//
//go:noescape
func dot4x2F16ExactAVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int, count int, step int)

// dot4x3F16ExactAVX512 is the kernel above for V = 3 and f16 rows.
//
//go:noescape
func dot4x3F16ExactAVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int, count int, step int)

// exactAVX512 are the exact kernels by element kind (none for bf16) for V = 2 and 3.
var exactAVX512 = [3][]exactMultiFunc{
	kindF32: {dot4x2F32ExactAVX512, dot4x3F32ExactAVX512},
	kindF16: {dot4x2F16ExactAVX512, dot4x3F16ExactAVX512},
}

// exactMultiFor returns the exact multi-vector kernels (for V = 2, 3, ...) of an
// element kind that pair with fk's 4-row kernels, or nil when there are none (fk is
// not the AVX-512 set, or bf16).
func exactMultiFor(kind int) []exactMultiFunc {
	if fk != &floatAVX512 {
		return nil
	}
	return exactAVX512[kind]
}

// The accumulate kernels: accum64F16x{V}AVX512(rows, stride, n, w, wstride, out,
// ostride) adds, for i < n and v < V, w[v*wstride+i] * row_i[d] to out[v*ostride+d]
// (d < 64; row i of halves at i*stride bytes after rows), in row order, one fused
// multiply-add per element as axpyF16AVX512 does: bitwise the same results, with the
// V outputs kept in registers and each row widened once for all of them.

//go:noescape
func accum64F16x1AVX512(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

//go:noescape
func accum64F16x2AVX512(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

//go:noescape
func accum64F16x3AVX512(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

//go:noescape
func accum64F16x4AVX512(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

//go:noescape
func accum64F16x5AVX512(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

//go:noescape
func accum64F16x6AVX512(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

// accumAVX512 are the accumulate kernels for V = 1..6 vectors.
var accumAVX512 = []accumFunc{accum64F16x1AVX512, accum64F16x2AVX512, accum64F16x3AVX512,
	accum64F16x4AVX512, accum64F16x5AVX512, accum64F16x6AVX512}

// accumKernelsFor returns the accumulate kernels (for V = 1, 2, ...) that add exactly as
// fk's axpyF16 does, or nil when fk is not the AVX-512 set.
func accumKernelsFor() []accumFunc {
	if fk != &floatAVX512 {
		return nil
	}
	return accumAVX512
}
