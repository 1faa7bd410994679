package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAccumulateF16 checks AccumulateF16 bitwise against AxpyF16 row by row, for every
// instruction-set level, row widths with and without a kernel, and numbers of vectors
// around the kernels' group size.
func TestAccumulateF16(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, dim := range []int{64, 128, 80, 16} {
			for _, vecs := range []int{1, 3, 6, 7, 13} {
				for _, n := range []int{0, 1, 5, 37} {
					name := fmt.Sprintf("dim=%d vecs=%d n=%d", dim, vecs, n)
					rows := make([]uint16, n*dim)
					F32ToF16Slice(rows, randF32(r, n*dim))
					wstride, ostride := n+3, dim+5
					w := randF32(r, vecs*wstride)
					out := randF32(r, vecs*ostride)
					want := append([]float32(nil), out...)
					for v := range vecs {
						for i := range n {
							AxpyF16(w[v*wstride+i], rows[i*dim:(i+1)*dim], want[v*ostride:v*ostride+dim])
						}
					}
					AccumulateF16(out, ostride, w, wstride, rows, dim, n, vecs)
					for i := range out {
						if out[i] != want[i] {
							t.Fatalf("%s: out[%d] = %v, AxpyF16 row by row %v", name, i, out[i], want[i])
						}
					}
				}
			}
		}
	})
}

// BenchmarkAccumulateF16 compares AccumulateF16 with AxpyF16 row by row on a chunk of
// attention: 128 rows of 64 halves into the 3 query vectors of gocode-22m's KV heads.
func BenchmarkAccumulateF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const dim, n, vecs = 64, 128, 3
	rows := make([]uint16, n*dim)
	F32ToF16Slice(rows, randF32(r, n*dim))
	w := randF32(r, vecs*n)
	out := make([]float32, vecs*dim)
	b.Run("fused", func(b *testing.B) {
		for b.Loop() {
			AccumulateF16(out, dim, w, n, rows, dim, n, vecs)
		}
	})
	b.Run("axpy", func(b *testing.B) {
		for b.Loop() {
			for v := range vecs {
				for i := range n {
					AxpyF16(w[v*n+i], rows[i*dim:(i+1)*dim], out[v*dim:(v+1)*dim])
				}
			}
		}
	})
}
