package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestLogSumExp checks LogSumExp against a float64 log-sum-exp at every instruction-set
// level, for lengths around the SIMD width, spreads of values from narrow to wide, and
// entries of −Inf (some, or all).
func TestLogSumExp(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		inf := math.Inf(-1)
		for _, n := range []int{0, 1, 7, 8, 9, 16, 33, 330, 1001} {
			for _, spread := range []float64{0.1, 5, 100} {
				for _, holes := range []int{0, 3, 100} {
					name := fmt.Sprintf("n=%d spread=%v holes=%d", n, spread, holes)
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(r.NormFloat64()*spread - 20)
						if r.IntN(100) < holes {
							x[i] = float32(inf)
						}
					}
					m := inf
					for _, v := range x {
						m = max(m, float64(v))
					}
					var sum float64
					for _, v := range x {
						if !math.IsInf(float64(v), -1) {
							sum += math.Exp(float64(v) - m)
						}
					}
					want := m + math.Log(sum)
					wantExp := make([]float64, n)
					for i, v := range x {
						wantExp[i] = math.Exp(float64(v - float32(m))) // the difference in float32, as computed
					}
					got := LogSumExp(x)
					if math.IsInf(m, -1) {
						if !math.IsInf(float64(got), -1) {
							t.Fatalf("%s: %v, want -Inf", name, got)
						}
						continue
					}
					if math.Abs(float64(got)-want) > 1e-6*max(1, math.Abs(want)) {
						t.Fatalf("%s: %v, want %v", name, got, want)
					}
					for i, e := range wantExp {
						if math.Abs(float64(x[i])-e) > 1e-6*e+1e-37 {
							t.Fatalf("%s: x[%d] = %v, want exp(x-m) = %v", name, i, x[i], e)
						}
					}
				}
			}
		}
	})
}

// TestMaxExpSum checks MaxF32 and ExpSum against plain loops at every instruction-set
// level, for lengths around the SIMD width and maxima from the block's own to far above.
func TestMaxExpSum(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		if m := MaxF32(nil); !math.IsInf(float64(m), -1) {
			t.Fatalf("MaxF32(nil) = %v", m)
		}
		for _, n := range []int{1, 5, 8, 9, 16, 31, 128, 1003} {
			for _, above := range []float32{0, 0.5, 30} {
				name := fmt.Sprintf("n=%d above=%v", n, above)
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(r.NormFloat64() * 4)
				}
				want := float32(math.Inf(-1))
				for _, v := range x {
					want = max(want, v)
				}
				if got := MaxF32(x); got != want {
					t.Fatalf("%s: MaxF32 %v, want %v", name, got, want)
				}
				m := want + above
				var wantSum float64
				wantExp := make([]float64, n)
				for i, v := range x {
					wantExp[i] = math.Exp(float64(v - m))
					wantSum += wantExp[i]
				}
				got := ExpSum(x, m)
				if math.Abs(float64(got)-wantSum) > 1e-5*wantSum { // float32 sums of up to 1003 terms
					t.Fatalf("%s: sum %v, want %v", name, got, wantSum)
				}
				for i, e := range wantExp {
					if math.Abs(float64(x[i])-e) > 1e-6*e+1e-37 {
						t.Fatalf("%s: x[%d] = %v, want %v", name, i, x[i], e)
					}
				}
			}
		}
	})
}
