package kernels

import (
	"math"
	"unsafe"
)

// Dot returns the inner product of a and b[:len(a)].
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	k := fk
	if k == nil {
		return dotRef(a, b)
	}
	nv := len(a) &^ (k.width - 1)
	s := k.dot[kindF32](unsafe.SliceData(a), unsafe.Pointer(unsafe.SliceData(b)), nv)
	for i := nv; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

// Axpy sets y[i] += alpha * x[i] for i < len(x).
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	k := fk
	nv := 0
	if k != nil {
		nv = len(x) &^ (k.width - 1)
		k.axpyF32(alpha, unsafe.Pointer(unsafe.SliceData(x)), unsafe.SliceData(y), nv)
	}
	for i := nv; i < len(x); i++ {
		y[i] += alpha * x[i]
	}
}

// Add sets dst[i] += x[i] for i < len(x).
func Add(dst, x []float32) { Axpy(1, x, dst) }

// opsKernels is one instruction-set level's element-wise kernels; each takes a multiple
// of 8 elements (max at least 8), the Go wrappers do the rest.
type opsKernels struct {
	expSubSum func(x *float32, n int, m float32) float32
	siluMul   func(gate, up *float32, n int)
	exp       func(x *float32, n int)
	max       func(x *float32, n int) float32
	scale     func(x *float32, n int, a float32)
}

// opsK is the element-wise kernel set in use, nil when only the reference is allowed.
var opsK *opsKernels

// softmaxExp is Softmax's exp-and-sum step over a whole row (any length), nil where
// Softmax uses ExpSum.
var softmaxExp func(x *float32, n int, m float32) float32

func init() { addReinit(func() { opsK, softmaxExp = opsKernelsFor(), softmaxExpFor() }) }

// Scale sets x[i] *= a.
func Scale(x []float32, a float32) {
	k := opsK
	nv := 0
	if k != nil {
		nv = len(x) &^ 7
		k.scale(unsafe.SliceData(x), nv, a)
	}
	for i := nv; i < len(x); i++ {
		x[i] *= a
	}
}

// RMSNorm sets dst[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]. dst may alias x.
func RMSNorm(dst, x, weight []float32, eps float32) {
	var ss float64
	if fk != nil {
		ss = float64(Dot(x, x))
	} else {
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
	}
	inv := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	dst, weight = dst[:len(x)], weight[:len(x)]
	for i, v := range x {
		dst[i] = v * inv * weight[i]
	}
}

// Softmax replaces x with exp(x - max x) / sum, in place. It returns the log of the
// normalizer, max + log(sum), so callers can merge partial softmaxes (log-sum-exp).
// An empty x returns -Inf. The SIMD exp has a relative error of about 2e-7.
func Softmax(x []float32) float32 {
	if len(x) == 0 {
		return float32(math.Inf(-1))
	}
	m := rowMax(x)
	var sum float32
	if softmaxExp != nil {
		sum = softmaxExp(unsafe.SliceData(x), len(x), m)
	} else {
		sum = ExpSum(x, m)
	}
	Scale(x, 1/sum)
	return m + float32(math.Log(float64(sum)))
}

// SiLUMul sets gate[i] = silu(gate[i]) * up[i], where silu(g) = g / (1 + exp(-g)):
// the SwiGLU activation.
func SiLUMul(gate, up []float32) {
	up = up[:len(gate)]
	k := opsK
	nv := 0
	if k != nil {
		nv = len(gate) &^ 7
		k.siluMul(unsafe.SliceData(gate), unsafe.SliceData(up), nv)
	}
	for i := nv; i < len(gate); i++ {
		g := gate[i]
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
	}
}
