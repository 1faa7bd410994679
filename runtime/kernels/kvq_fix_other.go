//go:build !amd64 || purego

package kernels

// The correction loop is amd64 assembly; kvqFast is false here, so this is never
// called (the reference loop of kvq_fix.go serves).

func kvqAddKeyFixes(dst *float32, dstride int, q *float32, nq, dim int, fixes *KVQKeyFix, n, lo, rows int) bool {
	return false
}

func kvqAddValueFixes(out *float32, ostride int, w *float32, wstride, nq int, fixes *KVQValueFix, n, lo, rows, dim int) bool {
	return false
}
