//go:build amd64 && !purego

package kernels

import "unsafe"

// The kernels below compute, for V activation vectors at once, the dots of 4 rows:
//
//	out[v*ostride+r*rstride] = sum_{i<n} x[v*xstride+i] * row_r[i]   (r < 4, v < V)
//
// where row r starts r*stride bytes after w and holds elements of the function's format.
// Each weight element is loaded (and widened) once for all V vectors. n is a multiple
// of 16 for the AVX-512 kernels, of 8 for the AVX2 ones.

// dot4x2F32AVX512 is the kernel above for V = 2 and F32 rows.
//
//go:noescape
func dot4x2F32AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x3F32AVX512 is the kernel above for V = 3 and F32 rows.
//
//go:noescape
func dot4x3F32AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x4F32AVX512 is the kernel above for V = 4 and F32 rows.
//
//go:noescape
func dot4x4F32AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x2F16AVX512 is the kernel above for V = 2 and F16 rows.
//
//go:noescape
func dot4x2F16AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x3F16AVX512 is the kernel above for V = 3 and F16 rows.
//
//go:noescape
func dot4x3F16AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x4F16AVX512 is the kernel above for V = 4 and F16 rows.
//
//go:noescape
func dot4x4F16AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x2BF16AVX512 is the kernel above for V = 2 and BF16 rows.
//
//go:noescape
func dot4x2BF16AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x3BF16AVX512 is the kernel above for V = 3 and BF16 rows.
//
//go:noescape
func dot4x3BF16AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x4BF16AVX512 is the kernel above for V = 4 and BF16 rows.
//
//go:noescape
func dot4x4BF16AVX512(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x2F32AVX2 is the kernel above for V = 2 and F32 rows, on 8-lane registers.
//
//go:noescape
func dot4x2F32AVX2(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x2F16AVX2 is the kernel above for V = 2 and F16 rows, on 8-lane registers.
//
//go:noescape
func dot4x2F16AVX2(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// dot4x2BF16AVX2 is the kernel above for V = 2 and BF16 rows, on 8-lane registers.
//
//go:noescape
func dot4x2BF16AVX2(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

func init() {
	floatAVX2.multiMax = 2
	floatAVX2.multi = [3][3]dotMultiFunc{{dot4x2F32AVX2}, {dot4x2F16AVX2}, {dot4x2BF16AVX2}}
	floatAVX512.multiMax = 4
	floatAVX512.multi = [3][3]dotMultiFunc{
		{dot4x2F32AVX512, dot4x3F32AVX512, dot4x4F32AVX512},
		{dot4x2F16AVX512, dot4x3F16AVX512, dot4x4F16AVX512},
		{dot4x2BF16AVX512, dot4x3BF16AVX512, dot4x4BF16AVX512},
	}
}
