package kernels

import "fmt"

// Outlier corrections of quantized keys and values (package kvquant keeps a row's
// outliers as corrections to its dense decoding, added after the multi-row kernels).

// KVQKeyFix is the correction of one key outlier: pair Pair (values 2·Pair and
// 2·Pair+1) of row Row changes by (A, B).
type KVQKeyFix struct {
	Row  int32
	Pair uint16
	A, B float32
}

// KVQAddKeyFixes adds q[v*dim+2p]·f.A + q[v*dim+2p+1]·f.B, p = f.Pair, to
// dst[v*dstride+f.Row−lo] for each fix f and v < nq: the fixes' changes of n scores of
// rows lo..lo+n−1, in order. It panics if a fix lies outside those rows or the vectors.
func KVQAddKeyFixes(dst []float32, dstride, n int, q []float32, nq, dim int, fixes []KVQKeyFix, lo int) {
	if len(fixes) == 0 || nq <= 0 {
		return
	}
	if len(dst) < (nq-1)*dstride+n || len(q) < nq*dim || (nq > 1 && dstride < n) {
		panic(fmt.Sprintf("kernels: KVQAddKeyFixes of %d rows for %d vectors of %d: dst %d (stride %d), q %d", n, nq, dim, len(dst), dstride, len(q)))
	}
	// The fast loop checks each fix as it goes; on a bad one it stops, and the check
	// here finds it.
	if kvqFast && kvqAddKeyFixes(&dst[0], dstride, &q[0], nq, dim, &fixes[0], len(fixes), lo, n) {
		return
	}
	for _, f := range fixes {
		if uint(int(f.Row)-lo) >= uint(n) || 2*int(f.Pair)+1 >= dim {
			panic(fmt.Sprintf("kernels: KVQAddKeyFixes: fix of row %d pair %d outside rows %d..%d of %d", f.Row, f.Pair, lo, lo+n-1, dim))
		}
	}
	if kvqFast {
		panic("kernels: KVQAddKeyFixes: the loop stopped at a fix inside the rows")
	}
	kvqAddKeyFixesRef(dst, dstride, q, nq, dim, fixes, lo)
}

func kvqAddKeyFixesRef(dst []float32, dstride int, q []float32, nq, dim int, fixes []KVQKeyFix, lo int) {
	for _, f := range fixes {
		i, p := int(f.Row)-lo, 2*int(f.Pair)
		for v := range nq {
			dst[v*dstride+i] += q[v*dim+p]*f.A + q[v*dim+p+1]*f.B
		}
	}
}

// KVQValueFix is the correction of one value outlier: value At of row Row changes by A.
type KVQValueFix struct {
	Row int32
	At  uint16
	A   float32
}

// KVQAddValueFixes adds w[v*wstride+f.Row−lo]·f.A to out[v*ostride+f.At] for each fix
// f and v < nq: the fixes' changes of the weighted sums of rows lo..lo+n−1 of dim
// values, in order (each product rounded, then added). It panics if a fix lies outside
// those rows or the values.
func KVQAddValueFixes(out []float32, ostride int, w []float32, wstride, n, nq, dim int, fixes []KVQValueFix, lo int) {
	if len(fixes) == 0 || nq <= 0 {
		return
	}
	if len(out) < (nq-1)*ostride+dim || len(w) < (nq-1)*wstride+n {
		panic(fmt.Sprintf("kernels: KVQAddValueFixes of %d rows of %d for %d vectors: out %d (stride %d), w %d (stride %d)", n, dim, nq, len(out), ostride, len(w), wstride))
	}
	if kvqFast && kvqAddValueFixes(&out[0], ostride, &w[0], wstride, nq, &fixes[0], len(fixes), lo, n, dim) {
		return
	}
	for _, f := range fixes {
		if uint(int(f.Row)-lo) >= uint(n) || int(f.At) >= dim {
			panic(fmt.Sprintf("kernels: KVQAddValueFixes: fix of row %d value %d outside rows %d..%d of %d", f.Row, f.At, lo, lo+n-1, dim))
		}
	}
	if kvqFast {
		panic("kernels: KVQAddValueFixes: the loop stopped at a fix inside the rows")
	}
	kvqAddValueFixesRef(out, ostride, w, wstride, nq, fixes, lo)
}

func kvqAddValueFixesRef(out []float32, ostride int, w []float32, wstride, nq int, fixes []KVQValueFix, lo int) {
	for _, f := range fixes {
		i, j := int(f.Row)-lo, int(f.At)
		for v := range nq {
			out[v*ostride+j] += w[v*wstride+i] * f.A
		}
	}
}
