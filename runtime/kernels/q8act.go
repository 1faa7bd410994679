package kernels

import "math"

// q8Block is the number of activation values that share one scale in Activation.Q8.
const q8Block = 32

// prepareQ8 sets a.Q8, a.Q8Scale and a.Q8Sum from a.F32: each block of 32 values is
// quantized to int8 with scale d = max|x|/127 (round to nearest even), and its int8
// values are summed. Only whole blocks are quantized (weight rows of the Q8_0 family are
// whole blocks). The slices are reused when their capacity suffices. a.F32 must be
// finite: the int8 values then lie in [-127, 127], which the fast dot products rely on.
func prepareQ8(a *Activation) {
	nb := len(a.F32) / q8Block
	n := nb * q8Block
	if cap(a.Q8) < n {
		a.Q8 = make([]int8, n)
	}
	if cap(a.Q8Scale) < nb {
		a.Q8Scale = make([]float32, nb)
	}
	if cap(a.Q8Sum) < nb {
		a.Q8Sum = make([]int32, nb)
	}
	a.Q8, a.Q8Scale, a.Q8Sum = a.Q8[:n], a.Q8Scale[:nb], a.Q8Sum[:nb]
	quantizeQ8Act(a.Q8, a.Q8Scale, a.Q8Sum, a.F32[:n])
}

// quantizeQ8Act quantizes len(x)/32 blocks of x into q, scale and sum; it is replaced
// by SIMD versions where the CPU has them (see q8act_amd64.go).
var quantizeQ8Act = quantizeQ8ActRef

// quantizeQ8ActRef is the reference: per block, d = amax/127, id = 1/d (0 when d is 0),
// q[j] = roundToEven(x[j]*id) computed in float32, sum = Σ q[j].
func quantizeQ8ActRef(q []int8, scale []float32, sum []int32, x []float32) {
	for b := range scale {
		xb := x[b*q8Block : (b+1)*q8Block]
		qb := q[b*q8Block : (b+1)*q8Block]
		var amax float32
		for _, v := range xb {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var s int32
		for j, v := range xb {
			p := v * id
			qv := int8(math.RoundToEven(float64(p)))
			qb[j] = qv
			s += int32(qv)
		}
		scale[b], sum[b] = d, s
	}
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
