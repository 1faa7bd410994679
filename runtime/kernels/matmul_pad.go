package kernels

import (
	"unsafe"

	"squeeze/runtime/gguf"
)

// dotPadOn reports whether DotRowsPadded has its kernels (dotPad).
var dotPadOn bool

func init() { addReinit(func() { dotPadOn = dotPadOK() }) }

// DotRowsPadded sets dst[v*w.Rows+r] to the dot product of row r of w with
// x[v*w.Cols:(v+1)*w.Cols] for the n vectors of x, on the calling thread, as MatMul
// would up to rounding: each output accumulates in 16 lanes over chunks of 16 elements,
// the last chunk padded with zeros (nothing is read past a row's Cols), and the lanes
// are then added in a fixed tree. An output is thus the same whatever the number of
// rows and vectors and whatever lies past Cols, where MatMul adds a row's last Cols%16
// products one at a time and its last Rows%4 rows through another kernel: attention's
// products (a cache's keys, and its transposed values of any span) cost no scalar
// tails and no pool. It reports false, computing nothing, where it has no kernel: w
// not F16, or no AVX-512.
func DotRowsPadded(dst []float32, w *Matrix, x []float32, n int) bool {
	return dotRowsPadded(16, dst, w, x, n)
}

// DotRows8 is DotRowsPadded on 8 lanes, for rows of a multiple of 8 elements: short
// rows, such as attention's keys (64 values), spend less of their time adding lanes.
// It reports false, computing nothing, where DotRowsPadded would, or where Cols is not
// a multiple of 8.
func DotRows8(dst []float32, w *Matrix, x []float32, n int) bool {
	return w.Cols%8 == 0 && dotRowsPadded(8, dst, w, x, n)
}

// dotRowsPadded is DotRowsPadded on lanes (16, or 8 for Cols a multiple of 8) lanes.
func dotRowsPadded(lanes int, dst []float32, w *Matrix, x []float32, n int) bool {
	if !dotPadOn || w.Type != gguf.TypeF16 {
		return false
	}
	if n <= 0 || w.Rows == 0 {
		return true
	}
	if w.Cols == 0 {
		clear(dst[:n*w.Rows])
		return true
	}
	_ = dst[n*w.Rows-1]
	_ = x[n*w.Cols-1]
	_ = w.Data[(w.Rows-1)*w.RowBytes+2*w.Cols-1]
	groups := w.Rows / 4
	for v := 0; v < n; {
		nv := min(4, n-v)
		if groups > 0 {
			dotPad(lanes, nv, unsafe.Pointer(unsafe.SliceData(w.Data)), w.RowBytes, &x[v*w.Cols], w.Cols, w.Cols, &dst[v*w.Rows], w.Rows, groups)
		}
		// The last Rows%4 rows one at a time: a group of 4 copies of the row (rowBytes
		// 0), whose first output per vector is the row's.
		var out [16]float32
		for r := 4 * groups; r < w.Rows; r++ {
			dotPad(lanes, nv, unsafe.Pointer(&w.Data[r*w.RowBytes]), 0, &x[v*w.Cols], w.Cols, w.Cols, &out[0], 4, 1)
			for i := range nv {
				dst[(v+i)*w.Rows+r] = out[4*i]
			}
		}
		v += nv
	}
	return true
}
