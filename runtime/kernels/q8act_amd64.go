//go:build amd64 && !purego

package kernels

func init() {
	addReinit(func() {
		quantizeQ8Act = quantizeQ8ActRef
		if cpuHas.AVX2FMA {
			quantizeQ8Act = quantizeQ8ActAVX2
		}
	})
}

// q8ActAVX2 quantizes nb blocks of 32 values of x exactly as quantizeQ8ActRef does:
//
//	for b := range nb {
//		d := max_j |x[32b+j]| / 127; id := 1/d (0 if d == 0)
//		q[32b+j] = roundToEven(x[32b+j]*id); scale[b] = d; sum[b] = Σ_j q[32b+j]
//	}
//
//go:noescape
func q8ActAVX2(q *int8, scale *float32, sum *int32, x *float32, nb int)

func quantizeQ8ActAVX2(q []int8, scale []float32, sum []int32, x []float32) {
	nb := len(scale)
	if nb == 0 {
		return
	}
	_, _, _ = q[nb*32-1], sum[nb-1], x[nb*32-1]
	q8ActAVX2(&q[0], &scale[0], &sum[0], &x[0], nb)
}
