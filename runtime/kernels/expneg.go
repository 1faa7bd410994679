package kernels

import "math"

// ExpNeg returns e^x for x ≤ 0 with a relative error below 2e-7, several times faster
// than math.Exp: x = k·ln2 + r with |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial,
// times 2^k. Results below e^−708 (never significant next to the e^0 = 1 term of a
// log-sum-exp) are 0; x = −Inf or NaN gives 0. Every product and sum is rounded on its
// own (no fused multiply-add), so AddExpNeg's vector kernel gives the same bits.
func ExpNeg(x float64) float64 {
	if !(x > -708) {
		return 0
	}
	// k: x·log2e rounded to an integer within 0.5 (truncation of a value ≤ −0.5 rounds
	// up, avoiding a call to math.Floor).
	k := float64(int64(float64(x*expLog2e) - 0.5))
	r := float64(x-float64(k*expLn2Hi)) - float64(k*expLn2Lo)
	t := float64(r * expC[0])
	for _, c := range expC[1:] {
		t = float64(r * (c + t))
	}
	return float64(1+t) * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

// ExpNeg's constants: log2(e), ln(2) in a high and a low part, and the Taylor
// coefficients 1/720, 1/120, 1/24, 1/6, 1/2, 1 in the order Horner's rule takes them.
const (
	expLog2e = 1.4426950408889634
	expLn2Hi = 6.93147180369123816490e-01
	expLn2Lo = 1.90821492927058770002e-10
)

var expC = [...]float64{1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2, 1}

// AddExpNeg adds ExpNeg(float64(x[i]) − z − top[i]) to sum[i] for every i < len(sum)
// whose top[i] is not −Inf (a log-sum-exp's sum of exponentials relative to its
// maximum, one term per call, for many sums at once). Its vector kernel gives the bits
// the scalar loop gives.
func AddExpNeg(sum, top []float64, x []float32, z float64) {
	top, x = top[:len(sum)], x[:len(sum)]
	nv := 0
	if expNegVec && len(sum) >= 8 {
		nv = len(sum) &^ 7
		addExpNeg512(&sum[0], &top[0], &x[0], nv, z, &expConsts)
	}
	inf := math.Inf(-1)
	for i := nv; i < len(sum); i++ {
		if top[i] != inf {
			sum[i] += ExpNeg(float64(float64(x[i])-z) - top[i])
		}
	}
}

// expConsts are ExpNeg's constants as the vector kernel loads them: log2e, 0.5, ln2 high
// and low, expC, then the cut-off −708 and −Inf.
var expConsts = [12]float64{expLog2e, 0.5, expLn2Hi, expLn2Lo,
	expC[0], expC[1], expC[2], expC[3], expC[4], expC[5], -708, math.Inf(-1)}

// expNegVec reports whether addExpNeg512 runs (AVX-512).
var expNegVec bool

func init() { addReinit(func() { expNegVec = expNegVecAvailable() }) }
