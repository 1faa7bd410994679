package kernels

import (
	"fmt"
	"unsafe"
)

// accumFunc is an accumulate kernel: 64 values of V vectors, see accum64F16x1AVX512.
type accumFunc func(rows unsafe.Pointer, stride, n int, w *float32, wstride int, out *float32, ostride int)

// AccumulateF16 adds weighted rows of half floats to several vectors: for v < vecs, in
// row order i < n, out[v*ostride+d] += w[v*wstride+i] * rows[i*dim+d] for d < dim,
// exactly as AxpyF16(w[v*wstride+i], row i, out[v*ostride:][:dim]) adds them (one
// rounding per product and sum), so the results are bitwise those of the AxpyF16 calls.
// Where the SIMD kernels allow (AVX-512, dim a multiple of 64) each vector stays in
// registers while the rows stream by, each row widened once for all the vectors, which
// is several times faster than the calls for attention's short rows.
func AccumulateF16(out []float32, ostride int, w []float32, wstride int, rows []uint16, dim, n, vecs int) {
	if n <= 0 || vecs <= 0 || dim <= 0 {
		return
	}
	if len(rows) < n*dim || len(w) < (vecs-1)*wstride+n || len(out) < (vecs-1)*ostride+dim {
		panic(fmt.Sprintf("kernels: AccumulateF16 of %d rows of %d into %d vectors: rows %d, w %d, out %d",
			n, dim, vecs, len(rows), len(w), len(out)))
	}
	ks := accumKernelsFor()
	if len(ks) == 0 || dim%64 != 0 {
		for v := range vecs {
			o := out[v*ostride : v*ostride+dim]
			for i, wi := range w[v*wstride : v*wstride+n] {
				AxpyF16(wi, rows[i*dim:(i+1)*dim], o)
			}
		}
		return
	}
	for c := 0; c < dim; c += 64 {
		for v := 0; v < vecs; v += len(ks) {
			nv := min(len(ks), vecs-v)
			ks[nv-1](unsafe.Pointer(&rows[c]), 2*dim, n, &w[v*wstride], wstride, &out[v*ostride+c], ostride)
		}
	}
}
