package kernels

import (
	"fmt"
	"unsafe"
)

// DotRows sets dst[v*dstride+i] = q[v*dim:(v+1)*dim] · rows[i*dim:(i+1)*dim] for the
// n = len(rows)/dim consecutive rows i and the nq query vectors v: the dots of a few
// query vectors with a run of f32 rows (centroids), each row read once for all the
// vectors by the multi-vector kernels of MatMul's float path, four rows at a time. It
// panics if the lengths do not fit (len(rows) a multiple of dim, q at least nq·dim
// values, dst reaching the last vector's last row).
func DotRows(dst []float32, dstride int, q []float32, nq int, rows []float32, dim int) {
	n := checkDotRows(len(dst), dstride, len(q), nq, len(rows), dim)
	if n == 0 || nq == 0 {
		return
	}
	done := dotRowsRun(dst, dstride, q, nq, f32Bytes(rows), n, dim, kindF32)
	for i := done; i < n; i++ {
		row := rows[i*dim : (i+1)*dim]
		for v := range nq {
			dst[v*dstride+i] = Dot(q[v*dim:(v+1)*dim], row)
		}
	}
}

// DotRowsF16 is DotRows for rows of half floats (attention keys where they are stored).
func DotRowsF16(dst []float32, dstride int, q []float32, nq int, rows []uint16, dim int) {
	n := checkDotRows(len(dst), dstride, len(q), nq, len(rows), dim)
	if n == 0 || nq == 0 {
		return
	}
	var w []byte
	if fk != nil {
		w = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(rows))), 2*len(rows))
	}
	done := dotRowsRun(dst, dstride, q, nq, w, n, dim, kindF16)
	for i := done; i < n; i++ {
		row := rows[i*dim : (i+1)*dim]
		for v := range nq {
			dst[v*dstride+i] = DotF16(q[v*dim:(v+1)*dim], row)
		}
	}
}

// checkDotRows panics unless the lengths fit DotRows; it returns the number of rows.
func checkDotRows(dst, dstride, q, nq, rows, dim int) int {
	if dim < 1 || rows%dim != 0 || nq < 0 || q < nq*dim {
		panic(fmt.Sprintf("kernels: DotRows of %d values in rows of %d with %d of %d vectors", rows, dim, q, nq))
	}
	n := rows / dim
	if n > 0 && nq > 0 && (dst < (nq-1)*dstride+n || dstride < n) {
		panic(fmt.Sprintf("kernels: DotRows into %d values with stride %d for %d vectors of %d rows", dst, dstride, nq, n))
	}
	return n
}

// dotRowsRun computes DotRows' dots where SIMD kernels exist, four rows per kernel
// call: rows i, i+n/4, i+2·n/4, i+3·n/4 together, then the last four rows again if n is
// not a multiple of four (a row's dot does not depend on the rows beside it). It returns
// the number of rows done: n, or 0 without the kernels or with fewer than four rows; w
// holds the n rows of element kind.
func dotRowsRun(dst []float32, dstride int, q []float32, nq int, w []byte, n, dim, kind int) int {
	k := fk
	if k == nil || k.multi[kind][0] == nil || n < 4 {
		return 0
	}
	q4 := n / 4
	rowBytes := len(w) / n
	for v := 0; v < nq; v += k.multiMax {
		nv := min(k.multiMax, nq-v)
		dotRowsMulti(dst[v*dstride:], dstride, w, rowBytes, q4, q4, q[v*dim:], dim, dim, nv, kind)
		if t := n - 4; n%4 != 0 {
			dotRowsMulti(dst[v*dstride+t:], dstride, w[t*rowBytes:], rowBytes, 1, 1, q[v*dim:], dim, dim, nv, kind)
		}
	}
	return n
}
