package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpApprox checks the SIMD exp against math.Exp over its whole normal range.
func TestExpApprox(t *testing.T) {
	k := opsKernelsFor()
	if k == nil {
		t.Skip("no SIMD exp on this CPU")
	}
	const n = 1 << 16
	x := make([]float32, n)
	for i := range x {
		x[i] = -87.3 + (88.3+87.3)*float32(i)/n
	}
	x[0], x[1], x[2], x[3] = 0, -1e-30, 1e-30, float32(math.Log(2)/2)
	got := append([]float32(nil), x...)
	k.exp(&got[0], n)
	var worst float64
	for i, v := range x {
		want := math.Exp(float64(v))
		rel := math.Abs(float64(got[i])-want) / want
		worst = max(worst, rel)
		if rel > 1e-6 {
			t.Fatalf("exp(%v) = %v, want %v (relative error %.2g)", v, got[i], want, rel)
		}
	}
	t.Logf("worst relative error %.3g", worst)
	special := []float32{float32(math.Inf(-1)), -1000, -87.4, float32(math.NaN()), 0, 0, 0, 0}
	k.exp(&special[0], 8)
	for i, want := range []float32{0, 0, 0} {
		if special[i] != want {
			t.Errorf("special case %d: got %v, want %v", i, special[i], want)
		}
	}
	if special[3] == special[3] {
		t.Errorf("exp(NaN) = %v, want NaN", special[3])
	}
}

func TestSoftmax(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, n := range append(oddSizes[1:], 2048, 2053) {
			x := randF32(r, n)
			for i := range x {
				x[i] *= 8
				if i%5 == 3 {
					x[i] = float32(math.Inf(-1)) // masked positions
				}
			}
			if n > 0 && x[0] == float32(math.Inf(-1)) {
				x[0] = 0
			}
			m := math.Inf(-1)
			for _, v := range x {
				m = max(m, float64(v))
			}
			var sum float64
			for _, v := range x {
				sum += math.Exp(float64(v) - m)
			}
			got := withPoison(x, 1e30) // a kernel reading past the end finds a huge maximum
			lse := Softmax(got)
			if want := m + math.Log(sum); math.Abs(float64(lse)-want) > 1e-5*max(1, math.Abs(want)) {
				t.Fatalf("n=%d: log-normalizer %v, want %v", n, lse, want)
			}
			for i, v := range x {
				want := math.Exp(float64(v)-m) / sum
				if math.Abs(float64(got[i])-want) > 2e-6*want+1e-12 {
					t.Fatalf("n=%d: element %d = %v, want %v", n, i, got[i], want)
				}
			}
		}
		if lse := Softmax(nil); !math.IsInf(float64(lse), -1) {
			t.Fatalf("Softmax(nil) = %v, want -Inf", lse)
		}
	})
}

func TestSiLUMul(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, n := range oddSizes {
			g, u := randF32(r, n), randF32(r, n+1)
			for i := range g {
				g[i] *= 6
			}
			if n > 2 {
				g[0], g[1] = -200, 200 // exp saturates; silu is 0 and g
			}
			got := withPoison(g, nan)
			SiLUMul(got, withPoison(u, nan))
			for i, v := range g {
				want := float64(v) / (1 + math.Exp(-float64(v))) * float64(u[i])
				if math.Abs(float64(got[i])-want) > 1e-6*math.Abs(want)+1e-30 {
					t.Fatalf("n=%d: element %d (g=%v u=%v) = %v, want %v", n, i, v, u[i], got[i], want)
				}
			}
		}
	})
}

func TestRMSNormScaleAdd(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(17, 18))
		for _, n := range oddSizes[1:] {
			x, w := randF32(r, n), randF32(r, n)
			var ss float64
			for _, v := range x {
				ss += float64(v) * float64(v)
			}
			inv := 1 / math.Sqrt(ss/float64(n)+1e-5)
			dst := make([]float32, n)
			RMSNorm(dst, x, w, 1e-5)
			for i := range x {
				want := float64(x[i]) * inv * float64(w[i])
				if math.Abs(float64(dst[i])-want) > 1e-5*math.Abs(want)+1e-30 {
					t.Fatalf("n=%d: RMSNorm element %d = %v, want %v", n, i, dst[i], want)
				}
			}
			RMSNorm(x, x, w, 1e-5) // in place
			for i := range x {
				if x[i] != dst[i] {
					t.Fatalf("n=%d: in-place RMSNorm differs at %d", n, i)
				}
			}
			y := append([]float32(nil), x...)
			Scale(y, 0.25)
			Add(y, x)
			for i := range x {
				if want := x[i]*0.25 + x[i]; math.Abs(float64(y[i]-want)) > 1e-6*math.Abs(float64(want)) {
					t.Fatalf("n=%d: Scale+Add element %d = %v, want %v", n, i, y[i], want)
				}
			}
		}
	})
}
