//go:build amd64 && !purego

package kernels

import "unsafe"

// float_gen.go writes the assembly of this file, float_multi_amd64.go, gemm_amd64.go and
// ops_amd64.go.
//go:generate go run float_gen.go

// The assembly kernels below work on n elements, n a multiple of the vector width
// (8 for AVX2, 16 for AVX-512); callers finish the remainder in Go. The weight pointer
// y or w points at n (per row) elements of the function's format: F32, IEEE half (F16)
// or bfloat16 (BF16).

// dotF32AVX2 returns sum_{i<n} x[i]*y[i].
//
//go:noescape
func dotF32AVX2(x *float32, y unsafe.Pointer, n int) float32

// dotF16AVX2 returns sum_{i<n} x[i]*F16ToF32(y[i]).
//
//go:noescape
func dotF16AVX2(x *float32, y unsafe.Pointer, n int) float32

// dotBF16AVX2 returns sum_{i<n} x[i]*BF16ToF32(y[i]).
//
//go:noescape
func dotBF16AVX2(x *float32, y unsafe.Pointer, n int) float32

// dot4F32AVX2 sets out[r*ostride] = sum_{i<n} x[i]*row_r[i] for r < 4, where row r
// starts r*stride bytes after w.
//
//go:noescape
func dot4F32AVX2(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// dot4F16AVX2 is dot4F32AVX2 for F16 rows.
//
//go:noescape
func dot4F16AVX2(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// dot4BF16AVX2 is dot4F32AVX2 for BF16 rows.
//
//go:noescape
func dot4BF16AVX2(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// axpyF32AVX2 sets y[i] += alpha*x[i] for i < n.
//
//go:noescape
func axpyF32AVX2(alpha float32, x unsafe.Pointer, y *float32, n int)

// axpyF16AVX2 sets y[i] += alpha*F16ToF32(x[i]) for i < n.
//
//go:noescape
func axpyF16AVX2(alpha float32, x unsafe.Pointer, y *float32, n int)

// widenF16AVX2 sets dst[i] = F16ToF32(src[i]) for i < n.
//
//go:noescape
func widenF16AVX2(dst *float32, src unsafe.Pointer, n int)

// widenBF16AVX2 sets dst[i] = BF16ToF32(src[i]) for i < n.
//
//go:noescape
func widenBF16AVX2(dst *float32, src unsafe.Pointer, n int)

// narrowF16AVX2 sets dst[i] = F32ToF16(src[i]) for i < n.
//
//go:noescape
func narrowF16AVX2(dst unsafe.Pointer, src *float32, n int)

// dotF32AVX512 is dotF32AVX2 on 16-lane registers.
//
//go:noescape
func dotF32AVX512(x *float32, y unsafe.Pointer, n int) float32

// dotF16AVX512 is dotF16AVX2 on 16-lane registers.
//
//go:noescape
func dotF16AVX512(x *float32, y unsafe.Pointer, n int) float32

// dotBF16AVX512 is dotBF16AVX2 on 16-lane registers.
//
//go:noescape
func dotBF16AVX512(x *float32, y unsafe.Pointer, n int) float32

// dot4F32AVX512 is dot4F32AVX2 on 16-lane registers.
//
//go:noescape
func dot4F32AVX512(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// dot4F16AVX512 is dot4F16AVX2 on 16-lane registers.
//
//go:noescape
func dot4F16AVX512(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// dot4BF16AVX512 is dot4BF16AVX2 on 16-lane registers.
//
//go:noescape
func dot4BF16AVX512(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// axpyF32AVX512 is axpyF32AVX2 on 16-lane registers.
//
//go:noescape
func axpyF32AVX512(alpha float32, x unsafe.Pointer, y *float32, n int)

// axpyF16AVX512 is axpyF16AVX2 on 16-lane registers.
//
//go:noescape
func axpyF16AVX512(alpha float32, x unsafe.Pointer, y *float32, n int)

// widenF16AVX512 is widenF16AVX2 on 16-lane registers.
//
//go:noescape
func widenF16AVX512(dst *float32, src unsafe.Pointer, n int)

// widenBF16AVX512 is widenBF16AVX2 on 16-lane registers.
//
//go:noescape
func widenBF16AVX512(dst *float32, src unsafe.Pointer, n int)

// narrowF16AVX512 is narrowF16AVX2 on 16-lane registers.
//
//go:noescape
func narrowF16AVX512(dst unsafe.Pointer, src *float32, n int)

var (
	floatAVX2 = floatKernels{
		width:   8,
		dot:     [3]dot1Func{dotF32AVX2, dotF16AVX2, dotBF16AVX2},
		dot4:    [3]dot4Func{dot4F32AVX2, dot4F16AVX2, dot4BF16AVX2},
		axpyF32: axpyF32AVX2, axpyF16: axpyF16AVX2,
		widenF16: widenF16AVX2, widenBF16: widenBF16AVX2, narrowF16: narrowF16AVX2,
	}
	floatAVX512 = floatKernels{
		width:   16,
		dot:     [3]dot1Func{dotF32AVX512, dotF16AVX512, dotBF16AVX512},
		dot4:    [3]dot4Func{dot4F32AVX512, dot4F16AVX512, dot4BF16AVX512},
		axpyF32: axpyF32AVX512, axpyF16: axpyF16AVX512,
		widenF16: widenF16AVX512, widenBF16: widenBF16AVX512, narrowF16: narrowF16AVX512,
	}
)

// floatKernelsFor returns the float kernels cpuHas allows, nil for the reference.
func floatKernelsFor() *floatKernels {
	switch {
	case cpuHas.AVX512:
		return &floatAVX512
	case cpuHas.AVX2FMA:
		return &floatAVX2
	}
	return nil
}
