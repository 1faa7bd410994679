//go:build amd64 && !purego

package kernels

// kvqAddKeyFixes is KVQAddKeyFixes's loop for n fixes (records of 16 bytes: Row at 0,
// Pair at 4, A and B at 8 and 12):
// for each fix f, v < nq: dst[v*dstride+f.Row−lo] += q[v*dim+2f.Pair]·f.A + q[v*dim+2f.Pair+1]·f.B.
// It reports false, having stopped, at a fix whose row is not in lo..lo+rows−1 or whose
// pair is not below dim/2.
//
//go:noescape
func kvqAddKeyFixes(dst *float32, dstride int, q *float32, nq, dim int, fixes *KVQKeyFix, n, lo, rows int) bool

// kvqAddValueFixes is KVQAddValueFixes's loop for n fixes (records of 12 bytes: Row at
// 0, At at 4, A at 8): for each fix f, v < nq: out[v*ostride+f.At] += w[v*wstride+f.Row−lo]·f.A.
// It reports false, having stopped, at a fix whose row is not in lo..lo+rows−1 or whose
// value is not below dim.
//
//go:noescape
func kvqAddValueFixes(out *float32, ostride int, w *float32, wstride, nq int, fixes *KVQValueFix, n, lo, rows, dim int) bool
