package kernels

import "fmt"

// Outlier corrections of quantized keys (package kvquant keeps a row's outliers as
// corrections to its dense decoding, added after the multi-row kernels).

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
	for _, f := range fixes {
		if uint(int(f.Row)-lo) >= uint(n) || 2*int(f.Pair)+1 >= dim {
			panic(fmt.Sprintf("kernels: KVQAddKeyFixes: fix of row %d pair %d outside rows %d..%d of %d", f.Row, f.Pair, lo, lo+n-1, dim))
		}
	}
	if kvqFast {
		kvqAddKeyFixes(&dst[0], dstride, &q[0], nq, dim, &fixes[0], len(fixes), lo)
		return
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
