package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestKVQKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{2, 3, 4} {
		for _, n := range []int{0, 1, 7, 8, 9, 16, 63, 64, 130} {
			src := make([]byte, (n*bits+7)/8)
			for i := range src {
				src[i] = byte(rng.UintN(256))
			}
			lut := make([]float32, n<<bits)
			for i := range lut {
				lut[i] = float32(rng.NormFloat64())
			}
			got := make([]float32, n+1)
			got[n] = 42 // guard
			KVQDecodeLUT(got[:n], src, bits, lut)
			for j := range n {
				if want := lut[j<<bits|kvqCode(src, bits, j)]; got[j] != want {
					t.Fatalf("%d bits, %d codes: DecodeLUT[%d] = %v, want %v", bits, n, j, got[j], want)
				}
			}
			if got[n] != 42 {
				t.Fatalf("%d bits: DecodeLUT wrote past the row", bits)
			}
			levels := make([]float32, 1<<bits)
			for i := range levels {
				levels[i] = float32(rng.NormFloat64())
			}
			y := make([]float32, n)
			for i := range y {
				y[i] = float32(rng.NormFloat64())
			}
			want := slices.Clone(y)
			const a = 0.75
			for j := range want {
				want[j] += a * levels[kvqCode(src, bits, j)]
			}
			KVQAxpyLevels(a, src, bits, levels, y)
			for j := range y {
				if math.Abs(float64(y[j]-want[j])) > 1e-6 {
					t.Fatalf("%d bits, %d codes: AxpyLevels[%d] = %v, want %v", bits, n, j, y[j], want[j])
				}
			}
		}
	}
	for _, neox := range []bool{false, true} {
		for _, tc := range []struct{ dim, rope int }{{2, 2}, {16, 16}, {64, 64}, {12, 8}} {
			r := NewRoPE(tc.rope, 10000, 1, neox)
			cos, sin := make([]float32, tc.rope/2), make([]float32, tc.rope/2)
			r.Angles(cos, sin, 1+rng.IntN(500))
			q, k := make([]float32, tc.dim), make([]float32, tc.dim)
			for i := range q {
				q[i], k[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			kc := slices.Clone(k)
			rot := slices.Clone(k)
			r.Rotate(rot[:tc.rope], cos, sin)
			want := dotRef(q, rot)
			got := KVQRopeDot(q, k, cos, sin, neox)
			if math.Abs(float64(got-want)) > 1e-5*(1+math.Abs(float64(want))) {
				t.Fatalf("neox %v dim %d rope %d: RopeDot %v, want %v", neox, tc.dim, tc.rope, got, want)
			}
			if !slices.Equal(k, kc) {
				t.Fatal("RopeDot changed the key")
			}
		}
	}
}
