package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpNeg checks ExpNeg against math.Exp from 0 down to −720, and its zeros.
func TestExpNeg(t *testing.T) {
	for i := range 200001 {
		x := -float64(i) * 0.0036 // 0 down to −720
		got, want := ExpNeg(x), math.Exp(x)
		if x <= -708 {
			if got != 0 {
				t.Fatalf("ExpNeg(%v) = %v, want 0", x, got)
			}
			continue
		}
		if math.Abs(got-want) > 2e-7*want {
			t.Fatalf("ExpNeg(%v) = %v, math.Exp %v", x, got, want)
		}
	}
	if ExpNeg(math.Inf(-1)) != 0 || ExpNeg(math.NaN()) != 0 {
		t.Fatal("ExpNeg(−Inf) or ExpNeg(NaN) is not 0")
	}
}

// TestAddExpNeg checks AddExpNeg's vector kernel against the scalar loop, bit for bit,
// on lengths around the vector width, with maxima of −Inf (skipped), NaN, terms far
// below e^−708, −Inf logits and an infinite z among ordinary values.
func TestAddExpNeg(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(61, 62))
		inf := math.Inf(-1)
		for _, n := range []int{1, 7, 8, 9, 64, 517} {
			for _, z := range []float64{0, -3.25, 12.5, math.Inf(1)} {
				x := make([]float32, n)
				top := make([]float64, n)
				sum := make([]float64, n)
				for i := range x {
					x[i] = float32(r.NormFloat64() * 8)
					top[i] = float64(x[i]) - z + r.Float64()*30 // a from about −30 to 0
					sum[i] = r.Float64()
					switch r.IntN(12) {
					case 0:
						top[i] = inf
					case 1:
						top[i] = math.NaN()
					case 2:
						top[i] += 800 // a below −708
					case 3:
						x[i] = float32(inf)
					case 4:
						top[i] = float64(x[i]) - z // a = 0
					}
				}
				want := append([]float64(nil), sum...)
				for i := range want {
					if top[i] != inf {
						want[i] += ExpNeg(float64(float64(x[i])-z) - top[i])
					}
				}
				AddExpNeg(sum, top, x, z)
				for i := range sum {
					if math.Float64bits(sum[i]) != math.Float64bits(want[i]) {
						t.Fatalf("n=%d z=%v: sum[%d] = %v, the scalar loop %v (x %v, top %v)", n, z, i, sum[i], want[i], x[i], top[i])
					}
				}
			}
		}
	})
}
