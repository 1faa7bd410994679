package kernels

import (
	"encoding/binary"
	"math"
	"unsafe"

	"squeeze/runtime/gguf"
)

// Element kinds of the plain float formats, indexing floatKernels' arrays.
const (
	kindF32 = iota
	kindF16
	kindBF16
)

// dot1Func returns sum_{i<n} x[i]*y[i], y of the kernel's element kind; n is a
// multiple of the kernel set's width.
type dot1Func func(x *float32, y unsafe.Pointer, n int) float32

// dot4Func sets out[r*ostride] = sum_{i<n} x[i]*row_r[i] for 4 rows, row r starting
// r*stride bytes after w; n is a multiple of the kernel set's width.
type dot4Func func(w unsafe.Pointer, stride int, x *float32, n int, out *float32, ostride int)

// dotMultiFunc sets out[v*ostride+r*rstride] = sum_{i<n} x[v*xstride+i]*row_r[i] for 4
// rows (row r at r*stride bytes after w) and a fixed number of vectors v; n is a
// multiple of the kernel set's width.
type dotMultiFunc func(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int)

// floatKernels is one instruction-set level's SIMD kernels for plain float data.
// Each works on a multiple of width elements; the Go wrappers do the rest.
type floatKernels struct {
	width     int
	dot       [3]dot1Func // by element kind
	dot4      [3]dot4Func
	axpyF32   func(alpha float32, x unsafe.Pointer, y *float32, n int)
	axpyF16   func(alpha float32, x unsafe.Pointer, y *float32, n int)
	widenF16  func(dst *float32, src unsafe.Pointer, n int)
	widenBF16 func(dst *float32, src unsafe.Pointer, n int)
	narrowF16 func(dst unsafe.Pointer, src *float32, n int)
	// multi[kind][V-2] is the 4-row kernel for V = 2..multiMax vectors (nil if none).
	multi    [3][3]dotMultiFunc
	multiMax int
}

// fk is the float kernel set in use, nil when only the reference is allowed.
var fk *floatKernels

// floatFast installs the SIMD float kernels cpuHas allows into the F32, F16 and BF16
// formats (the reference ones are already installed).
func floatFast() {
	fk = floatKernelsFor()
	if fk == nil {
		return
	}
	f32, f16, bf16 := formats[gguf.TypeF32], formats[gguf.TypeF16], formats[gguf.TypeBF16]
	f32.dequant = dequantF32Fast
	f16.dequant = func(dst []float32, src []byte) { F16ToF32Slice(dst, bytesAsU16(src[:2*len(dst)])) }
	bf16.dequant = dequantBF16Fast
	f32.dotRows = func(dst []float32, w []byte, rowBytes int, a *Activation) {
		dotRowsFloat(dst, w, rowBytes, a.F32, kindF32)
	}
	f16.dotRows = func(dst []float32, w []byte, rowBytes int, a *Activation) {
		dotRowsFloat(dst, w, rowBytes, a.F32, kindF16)
	}
	bf16.dotRows = func(dst []float32, w []byte, rowBytes int, a *Activation) {
		dotRowsFloat(dst, w, rowBytes, a.F32, kindBF16)
	}
}

func dequantF32Fast(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	if len(dst) == 0 {
		return
	}
	copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), len(dst)))
}

func dequantBF16Fast(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	k := fk
	nv := len(dst) &^ (k.width - 1)
	k.widenBF16(unsafe.SliceData(dst), unsafe.Pointer(unsafe.SliceData(src)), nv)
	for i := nv; i < len(dst); i++ {
		dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// bytesAsU16 reinterprets little-endian bytes as halves (amd64 and every Go target
// with SIMD kernels are little-endian; the reference paths never call it).
func bytesAsU16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

// elemAt decodes element i of a row of the given kind.
func elemAt(row []byte, i, kind int) float32 {
	switch kind {
	case kindF32:
		return math.Float32frombits(binary.LittleEndian.Uint32(row[4*i:]))
	case kindF16:
		return F16ToF32(binary.LittleEndian.Uint16(row[2*i:]))
	}
	return BF16ToF32(binary.LittleEndian.Uint16(row[2*i:]))
}

// dotRowsFloat is dotRows for the plain float formats with fk's kernels. The 4-row
// kernel shares each activation load between rows r, r+q, r+2q and r+3q (q = a quarter
// of the rows): four long sequential streams, which the hardware prefetchers follow.
// Four adjacent rows would be four short streams restarting every row, and measure half
// the memory bandwidth (9 against 20 GB/s, one core, AMD Zen 4).
func dotRowsFloat(dst []float32, w []byte, rowBytes int, x []float32, kind int) {
	if len(x) == 0 {
		clear(dst)
		return
	}
	if len(dst) == 0 {
		return
	}
	_ = w[len(dst)*rowBytes-1] // the kernels read this far
	k := fk
	n := len(x)
	nv := n &^ (k.width - 1)
	xp := unsafe.SliceData(x)
	dot4, dot1 := k.dot4[kind], k.dot[kind]
	q := len(dst) / 4
	for r := range q {
		dot4(unsafe.Pointer(&w[r*rowBytes]), q*rowBytes, xp, nv, &dst[r], q)
		for j := 0; j < 4 && nv < n; j++ {
			row := r + j*q
			rw := w[row*rowBytes : (row+1)*rowBytes]
			s := dst[row]
			for i := nv; i < n; i++ {
				s += x[i] * elemAt(rw, i, kind)
			}
			dst[row] = s
		}
	}
	for r := 4 * q; r < len(dst); r++ {
		row := w[r*rowBytes : (r+1)*rowBytes]
		s := dot1(xp, unsafe.Pointer(&row[0]), nv)
		for i := nv; i < n; i++ {
			s += x[i] * elemAt(row, i, kind)
		}
		dst[r] = s
	}
}

// floatKind returns the element kind of a plain float weight type.
func floatKind(t gguf.Type) (int, bool) {
	switch t {
	case gguf.TypeF32:
		return kindF32, true
	case gguf.TypeF16:
		return kindF16, true
	case gguf.TypeBF16:
		return kindBF16, true
	}
	return 0, false
}

// dotRowsMulti computes, for vectors v < nv (1 to fk.multiMax) and rows i < cnt,
// j < 4, the dot of row i+j*q of w with x[v*xStride:][:cols] into
// dst[v*dstStride+i+j*q], loading each weight once for all nv vectors. Rows q apart
// keep four long sequential streams (see dotRowsFloat). It needs fk.multi (callers
// check).
func dotRowsMulti(dst []float32, dstStride int, w []byte, rowBytes, cnt, q int, x []float32, xStride, cols, nv, kind int) {
	if cnt == 0 || nv == 0 {
		return
	}
	_ = w[(cnt+3*q)*rowBytes-1]
	_ = x[(nv-1)*xStride+cols-1]
	_ = dst[(nv-1)*dstStride+cnt-1+3*q]
	k := fk
	nk := cols &^ (k.width - 1)
	for i := range cnt {
		wp := unsafe.Pointer(&w[i*rowBytes])
		if nv == 1 {
			k.dot4[kind](wp, q*rowBytes, &x[0], nk, &dst[i], q)
		} else {
			k.multi[kind][nv-2](wp, q*rowBytes, &x[0], xStride, nk, &dst[i], dstStride, q)
		}
		if nk == cols {
			continue
		}
		for j := range 4 {
			r := i + j*q
			row := w[r*rowBytes : (r+1)*rowBytes]
			for v := range nv {
				xv := x[v*xStride : v*xStride+cols]
				s := dst[v*dstStride+r]
				for c := nk; c < cols; c++ {
					s += xv[c] * elemAt(row, c, kind)
				}
				dst[v*dstStride+r] = s
			}
		}
	}
}
