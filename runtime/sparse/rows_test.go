package sparse

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestF16Rows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ dim, rows, lo, hi int }{
		{64, 40, 0, 40}, {64, 40, 7, 29}, {17, 9, 3, 4}, {128, 5, 2, 2}, {1, 3, 0, 3},
	} {
		raw := randVec(rng, tc.dim*tc.rows, 1)
		r := NewF16Rows(tc.dim, raw)
		if r.Len() != tc.rows {
			t.Fatalf("Len = %d, want %d", r.Len(), tc.rows)
		}
		ref := roundF16(raw)
		q := randVec(rng, tc.dim, 1)
		n := tc.hi - tc.lo
		dst := make([]float32, n+1)
		dst[n] = 42 // guard
		r.Dots(dst, q, tc.lo, tc.hi)
		w := randVec(rng, n, 1)
		out := randVec(rng, tc.dim+1, 1)
		want := make([]float64, tc.dim)
		for d := range want {
			want[d] = float64(out[d])
		}
		guard := out[tc.dim]
		r.Accumulate(out, w, tc.lo, tc.hi)
		for i := range n {
			var s float64
			for d := range tc.dim {
				s += float64(q[d]) * ref[(tc.lo+i)*tc.dim+d]
				want[d] += float64(w[i]) * ref[(tc.lo+i)*tc.dim+d]
			}
			if math.Abs(float64(dst[i])-s) > 1e-5*float64(tc.dim) {
				t.Errorf("dim %d: dot %d = %v, want %v", tc.dim, i, dst[i], s)
			}
		}
		for d := range tc.dim {
			if math.Abs(float64(out[d])-want[d]) > 1e-5*float64(n+1) {
				t.Errorf("dim %d: accumulate[%d] = %v, want %v", tc.dim, d, out[d], want[d])
			}
		}
		if dst[n] != 42 || out[tc.dim] != guard {
			t.Errorf("dim %d: write past the end", tc.dim)
		}
	}
}
