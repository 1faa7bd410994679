//go:build !amd64 || purego

package kernels

// kvqAvailable reports false: the group kernels are amd64 assembly, and the pure-Go
// loops of kvq.go serve on this platform. The functions below keep the callers
// compiling; kvqFast false means they are never called.
func kvqAvailable() bool { return false }

func kvqDecodeChannelGroups(dst *float32, src *byte, groups, bits int, levels, half, mid *float32) {}

func kvqDecodeTokenGroups(dst *float32, src *byte, groups, bits int, levels *float32, half, mid float32) {
}

func kvqAxpyTokenGroups(a float32, src *byte, groups, bits int, levels *float32, y *float32) {}

func kvqRotateAdjGroups(x, cos, sin *float32, quads int) {}

func kvqRotateNeoXGroups(lo, hi, cos, sin *float32, octs int) {}

func kvqAnglesGroups(cos, sin, ch, sh, cl, sl *float32, octs int) {}

func kvqDotGroups(a, b *float32, octs int) float32 { return 0 }

func kvqDecodeRotateGroups(dst *float32, src *byte, groups, bits int, levels, half, mid, ch, sh, cl, sl *float32) {
}

func kvqScoreKeysRows(dst *float32, dstride int, q *float32, nq int, src *byte, n, dim, bits int, levels, ranges *float32, pos *int32, hi, lo *float32) {
}

func kvqAccumTokenRows(out *float32, ostride int, a *float32, nq int, src *byte, n, dim, bits int, levels *float32) {
}

func kvq512Available() bool { return false }

func kvqAccumTokenRows512(out *float32, ostride int, a *float32, astride, nq int, off *float32, src *byte, n, dim, bits int, levels *float32) {
}

func kvqScaleWeights512(a *float32, astride int, w *float32, wstride, nq int, half, mid *float32, n int, off *float32) {
}

func kvqScoreKeysLo512(dst *float32, dstride int, prep *float32, nq int, src *byte, n, dim, bits int, levels, ranges *float32, pos *int32, hi *float32) {
}

func kvqScoreKeys64x4(dst *float32, dstride int, prep *float32, nq int, src *byte, rows, bits int, levels, ranges *float32, pos *int32, hi *float32, hiRows int) bool {
	return false
}

func kvqTurnQueries512(dst, q *float32, nq, dim int, back *float32) {}
