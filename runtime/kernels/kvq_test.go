package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKVQFast compares the decoding and rotation kernels at every instruction-set level
// with one-code-at-a-time references, on odd lengths, with guards after the rows.
func TestKVQFast(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, bits := range []int{2, 3, 4} {
			for _, n := range []int{0, 1, 7, 8, 9, 16, 23, 64, 128, 130} {
				src := make([]byte, (n*bits+7)/8)
				for i := range src {
					src[i] = byte(rng.UintN(256))
				}
				var lv KVQLevels
				for i := range 1 << bits {
					lv[i] = float32(rng.NormFloat64())
				}
				half, mid := make([]float32, n), make([]float32, n)
				for i := range half {
					half[i], mid[i] = float32(rng.Float64()), float32(rng.NormFloat64())
				}
				near := func(what string, got, want []float32) {
					t.Helper()
					for j := range want {
						if math.Abs(float64(got[j]-want[j])) > 1e-6*(1+math.Abs(float64(want[j]))) {
							t.Fatalf("%d bits, %d codes: %s[%d] = %v, want %v", bits, n, what, j, got[j], want[j])
						}
					}
					if got[n] != 42 {
						t.Fatalf("%d bits, %d codes: %s wrote past the row", bits, n, what)
					}
				}
				got, want := make([]float32, n+1), make([]float32, n)
				got[n] = 42
				KVQDecodeChannel(got[:n], src, bits, &lv, half, mid)
				for j := range want {
					want[j] = mid[j] + half[j]*lv[kvqCode(src, bits, j)]
				}
				near("DecodeChannel", got, want)
				if n%2 == 0 {
					p := n / 2
					ch, sh, cl, sl := make([]float32, p), make([]float32, p), make([]float32, p), make([]float32, p)
					for i := range p {
						a, b := rng.Float64()*50, rng.Float64()
						ch[i], sh[i] = float32(math.Cos(a)), float32(math.Sin(a))
						cl[i], sl[i] = float32(math.Cos(b)), float32(math.Sin(b))
					}
					cos, sin := make([]float32, p), make([]float32, p)
					KVQAngles(cos, sin, ch, sh, cl, sl)
					KVQRotate(want, cos, sin, false)
					KVQDecodeRotate(got[:n], src, bits, &lv, half, mid, ch, sh, cl, sl)
					near("DecodeRotate", got, want)
				}
				KVQDecodeToken(got[:n], src, bits, &lv, 0.5, -1.25)
				for j := range want {
					want[j] = -1.25 + 0.5*lv[kvqCode(src, bits, j)]
				}
				near("DecodeToken", got, want)
				copy(got, mid)
				KVQAxpyToken(0.75, src, bits, &lv, got[:n])
				for j := range want {
					want[j] = mid[j] + 0.75*lv[kvqCode(src, bits, j)]
				}
				near("AxpyToken", got, want)
			}
		}
		for _, n := range []int{0, 1, 7, 8, 9, 64, 130} {
			a, b := make([]float32, n), make([]float32, n)
			for i := range a {
				a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			if got, want := KVQDot(a, b), dotRef(a, b); math.Abs(float64(got-want)) > 1e-5*(1+math.Abs(float64(want))) {
				t.Fatalf("Dot of %d: %v, want %v", n, got, want)
			}
		}
		for _, n := range []int{0, 1, 8, 13, 32, 64} {
			a, b := make([]float64, n), make([]float64, n)
			ch, sh, cl, sl := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range n {
				a[i], b[i] = rng.Float64()*100, rng.Float64()*3
				ch[i], sh[i] = float32(math.Cos(a[i])), float32(math.Sin(a[i]))
				cl[i], sl[i] = float32(math.Cos(b[i])), float32(math.Sin(b[i]))
			}
			cos, sin := make([]float32, n), make([]float32, n)
			KVQAngles(cos, sin, ch, sh, cl, sl)
			for i := range n {
				if math.Abs(float64(cos[i])-math.Cos(a[i]+b[i])) > 3e-7 || math.Abs(float64(sin[i])-math.Sin(a[i]+b[i])) > 3e-7 {
					t.Fatalf("Angles[%d] of %d: %v %v, want %v %v", i, n, cos[i], sin[i], math.Cos(a[i]+b[i]), math.Sin(a[i]+b[i]))
				}
			}
		}
		for _, neox := range []bool{false, true} {
			for _, rd := range []int{2, 8, 16, 24, 64, 128} {
				r := NewRoPE(rd, 10000, 1, neox)
				cos, sin := make([]float32, rd/2), make([]float32, rd/2)
				r.Angles(cos, sin, 1+rng.IntN(3000))
				x := make([]float32, rd+1)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				x[rd] = 42
				want := slices.Clone(x[:rd])
				r.Rotate(want, cos, sin)
				KVQRotate(x, cos, sin, neox)
				for i := range want {
					if math.Abs(float64(x[i]-want[i])) > 1e-6*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("neox %v, %d values: Rotate[%d] = %v, want %v", neox, rd, i, x[i], want[i])
					}
				}
				if x[rd] != 42 {
					t.Fatal("Rotate changed a value past the rotated part")
				}
			}
		}
	})
}
