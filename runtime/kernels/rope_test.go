package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRoPE checks Rotate against the rotation written out directly, for adjacent pairs
// (GGUF llama) and NeoX halves, several heads and positions, with linear scaling.
func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	cases := []struct {
		name     string
		headDim  int
		theta    float64
		posScale float64
		neox     bool
	}{
		{"llama", 64, 1e4, 1, false},
		{"llama-theta1e5", 64, 1e5, 1, false},
		{"neox", 64, 1e6, 1, true},
		{"neox-scaled", 32, 1e4, 0.25, true},
		{"small", 2, 1e4, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rope := NewRoPE(c.headDim, c.theta, c.posScale, c.neox)
			half := c.headDim / 2
			cos, sin := make([]float32, half), make([]float32, half)
			for _, pos := range []int{0, 1, 7, 511, 8191, 40000} {
				rope.Angles(cos, sin, pos)
				const heads = 3
				x := randF32(r, heads*c.headDim)
				got := append([]float32(nil), x...)
				rope.Rotate(got, cos, sin)
				for h := range heads {
					v := x[h*c.headDim : (h+1)*c.headDim]
					for i := range half {
						a, b := 2*i, 2*i+1
						if c.neox {
							a, b = i, i+half
						}
						ang := float64(pos) * c.posScale * math.Pow(c.theta, -2*float64(i)/float64(c.headDim))
						wantA := float64(v[a])*math.Cos(ang) - float64(v[b])*math.Sin(ang)
						wantB := float64(v[a])*math.Sin(ang) + float64(v[b])*math.Cos(ang)
						ga, gb := got[h*c.headDim+a], got[h*c.headDim+b]
						if math.Abs(float64(ga)-wantA) > 1e-5 || math.Abs(float64(gb)-wantB) > 1e-5 {
							t.Fatalf("pos %d head %d pair %d: got (%v, %v), want (%v, %v)", pos, h, i, ga, gb, wantA, wantB)
						}
					}
				}
			}
		})
	}
}

// TestRoPERelative checks the property attention relies on: the score of a rotated
// query and key depends only on their distance.
func TestRoPERelative(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, neox := range []bool{false, true} {
		rope := NewRoPE(64, 1e4, 1, neox)
		q, k := randF32(r, 64), randF32(r, 64)
		score := func(pq, pk int) float32 {
			cos, sin := make([]float32, 32), make([]float32, 32)
			qq, kk := append([]float32(nil), q...), append([]float32(nil), k...)
			rope.Angles(cos, sin, pq)
			rope.Rotate(qq, cos, sin)
			rope.Angles(cos, sin, pk)
			rope.Rotate(kk, cos, sin)
			return Dot(qq, kk)
		}
		a, b := score(10, 3), score(1007, 1000)
		if math.Abs(float64(a-b)) > 1e-3*math.Abs(float64(a))+1e-4 {
			t.Errorf("neox=%v: score at distance 7 differs: %v vs %v", neox, a, b)
		}
	}
}
