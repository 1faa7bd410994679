//go:build amd64 && !purego

package kernels

import "unsafe"

//go:generate go run matmul_gen.go

// The kernels below run dot4x{V}{F}AVX512 (V = 2..4 vectors; F32, F16 or BF16 rows)
// over groups consecutive groups of 4 consecutive rows (row k at w + k*rowBytes):
//
//	out[v*ostride+k] = sum_{i<n} x[v*xstride+i] * row_k[i]   (k < 4*groups, v < V)
//
// each output bitwise what dot4xV gives it (the same accumulation and reduction), with
// a single call for all the groups. n is a positive multiple of 16.

// dot4x2LoopF32AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x2LoopF32AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x3LoopF32AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x3LoopF32AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x4LoopF32AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x4LoopF32AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x2LoopF16AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x2LoopF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x3LoopF16AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x3LoopF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x4LoopF16AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x4LoopF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x2LoopBF16AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x2LoopBF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x3LoopBF16AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x3LoopBF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x4LoopBF16AVX512 is the kernel above for its vector count and format.
//
//go:noescape
func dot4x4LoopBF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x1PadF16AVX512 is dot4x2LoopF16AVX512's loop for one vector for any n >= 0: the last n%16
// elements come in one chunk loaded under a mask (zeros beyond, nothing read past n).
// Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x1PadF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x2PadF16AVX512 is dot4x2LoopF16AVX512's loop for any n >= 0: the last n%16
// elements come in one chunk loaded under a mask (zeros beyond, nothing read past n).
// Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x2PadF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x3PadF16AVX512 is dot4x3LoopF16AVX512's loop for any n >= 0: the last n%16
// elements come in one chunk loaded under a mask (zeros beyond, nothing read past n).
// Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x3PadF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x4PadF16AVX512 is dot4x4LoopF16AVX512's loop for any n >= 0: the last n%16
// elements come in one chunk loaded under a mask (zeros beyond, nothing read past n).
// Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x4PadF16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x1Short8F16AVX512 is dot4x1PadF16AVX512 on 8 lanes (Y registers) for n a
// multiple of 8. Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x1Short8F16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x2Short8F16AVX512 is dot4x2PadF16AVX512 on 8 lanes (Y registers) for n a
// multiple of 8. Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x2Short8F16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x3Short8F16AVX512 is dot4x3PadF16AVX512 on 8 lanes (Y registers) for n a
// multiple of 8. Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x3Short8F16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dot4x4Short8F16AVX512 is dot4x4PadF16AVX512 on 8 lanes (Y registers) for n a
// multiple of 8. Each output is bitwise what the kernel gives it for any other V.
//
//go:noescape
func dot4x4Short8F16AVX512(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dotLoopFunc is the type of the kernels above.
type dotLoopFunc func(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dotLoopAVX512 are the kernels above by element kind, for V = 2..4.
var dotLoopAVX512 = [3][]dotLoopFunc{
	kindF32:  {dot4x2LoopF32AVX512, dot4x3LoopF32AVX512, dot4x4LoopF32AVX512},
	kindF16:  {dot4x2LoopF16AVX512, dot4x3LoopF16AVX512, dot4x4LoopF16AVX512},
	kindBF16: {dot4x2LoopBF16AVX512, dot4x3LoopBF16AVX512, dot4x4LoopBF16AVX512},
}

// dotLoopFor returns the looped kernels (for V = 2, 3, 4) that pair with fk's
// multi-vector kernels of an element kind, or nil when fk is not the AVX-512 set.
func dotLoopFor(kind int) []dotLoopFunc {
	if fk != &floatAVX512 {
		return nil
	}
	return dotLoopAVX512[kind]
}

// dotPadOK reports whether cpuHas allows the padded F16 kernels.
func dotPadOK() bool { return cpuHas.AVX512 }

// dotPad runs dot4x{nv}PadF16AVX512 (nv = 1..4), or with lanes 8
// dot4x{nv}Short8F16AVX512, called directly so that its pointers do not escape.
func dotPad(lanes, nv int, w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int) {
	switch {
	case lanes == 8 && nv == 1:
		dot4x1Short8F16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	case lanes == 8 && nv == 2:
		dot4x2Short8F16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	case lanes == 8 && nv == 3:
		dot4x3Short8F16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	case lanes == 8:
		dot4x4Short8F16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	case nv == 1:
		dot4x1PadF16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	case nv == 2:
		dot4x2PadF16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	case nv == 3:
		dot4x3PadF16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	default:
		dot4x4PadF16AVX512(w, rowBytes, x, xstride, n, out, ostride, groups)
	}
}
