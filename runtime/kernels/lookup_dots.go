package kernels

import "fmt"

// DotRows sets dst[v*dstride+i] = q[v*dim:(v+1)*dim] · rows[i*dim:(i+1)*dim] for the
// n = len(rows)/dim consecutive rows i and the nq query vectors v: the dots of a few
// query vectors with a run of f32 rows (centroids), each row read once for all the
// vectors by the multi-vector kernels of MatMul's float path, four rows at a time. It
// panics if the lengths do not fit (len(rows) a multiple of dim, q at least nq·dim
// values, dst reaching the last vector's last row).
func DotRows(dst []float32, dstride int, q []float32, nq int, rows []float32, dim int) {
	if dim < 1 || len(rows)%dim != 0 || nq < 0 || len(q) < nq*dim {
		panic(fmt.Sprintf("kernels: DotRows of %d values in rows of %d with %d of %d vectors", len(rows), dim, len(q), nq))
	}
	n := len(rows) / dim
	if n == 0 || nq == 0 {
		return
	}
	if len(dst) < (nq-1)*dstride+n || dstride < n {
		panic(fmt.Sprintf("kernels: DotRows into %d values with stride %d for %d vectors of %d rows", len(dst), dstride, nq, n))
	}
	k := fk
	done := 0
	if k != nil && k.multi[kindF32][0] != nil {
		// Rows i, i+q4, i+2·q4, i+3·q4 of the run go through a kernel together.
		q4 := n / 4
		if q4 > 0 {
			w := f32Bytes(rows)
			for v := 0; v < nq; v += k.multiMax {
				nv := min(k.multiMax, nq-v)
				dotRowsMulti(dst[v*dstride:], dstride, w, 4*dim, q4, q4, q[v*dim:], dim, dim, nv, kindF32)
			}
		}
		done = 4 * q4
	}
	for i := done; i < n; i++ {
		row := rows[i*dim : (i+1)*dim]
		for v := range nq {
			dst[v*dstride+i] = Dot(q[v*dim:(v+1)*dim], row)
		}
	}
}
