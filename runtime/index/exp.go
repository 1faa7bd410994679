package index

import "math"

// expNeg returns e^x for x ≤ 0 with a relative error below 2e-7, several times faster
// than math.Exp: x = k·ln2 + r with |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial,
// times 2^k. Results below e^−708 (never significant next to the e^0 = 1 term of a
// log-sum-exp) are 0; x = −Inf gives 0.
func expNeg(x float64) float64 {
	if !(x > -708) {
		return 0
	}
	const (
		log2e = 1.4426950408889634
		ln2hi = 6.93147180369123816490e-01
		ln2lo = 1.90821492927058770002e-10
	)
	// k: x·log2e rounded to an integer within 0.5 (truncation of a value ≤ −0.5 rounds
	// up, avoiding a call to math.Floor).
	k := float64(int64(x*log2e - 0.5))
	r := x - k*ln2hi - k*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}
