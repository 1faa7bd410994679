package kernels

import (
	"math"
	"unsafe"
)

// LogSumExp returns log Σ_i exp(x[i]), computed as m + log Σ_i exp(x[i] − m) with m the
// largest x[i], and leaves exp(x[i] − m) in x: Softmax without its final division (the
// centroid lookup needs only the normalizer). Entries of −Inf count for nothing; an
// empty x, or one of −Inf only, gives −Inf. x must hold no NaN or +Inf. The SIMD exp has
// a relative error of about 2e-7.
func LogSumExp(x []float32) float32 {
	m := MaxF32(x)
	if math.IsInf(float64(m), -1) {
		return m
	}
	return m + float32(math.Log(float64(ExpSum(x, m))))
}

// MaxF32 returns the largest x[i], −Inf for an empty x (x must hold no NaN).
func MaxF32(x []float32) float32 {
	if len(x) == 0 {
		return float32(math.Inf(-1))
	}
	return rowMax(x)
}

// ExpSum sets x[i] = exp(x[i] − m) and returns their sum, for m at least every x[i]
// and finite: the weights of one block of an online softmax against its running
// maximum. The SIMD exp has a relative error of about 2e-7.
func ExpSum(x []float32, m float32) float32 {
	k := opsK
	nv := 0
	var sum float32
	if k != nil && len(x) >= 8 {
		nv = len(x) &^ 7
		sum = k.expSubSum(unsafe.SliceData(x), nv, m)
	}
	for i := nv; i < len(x); i++ {
		e := float32(math.Exp(float64(x[i] - m)))
		x[i] = e
		sum += e
	}
	return sum
}
