package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestDotRows checks DotRows and DotRowsF16 against float64 dots for every instruction-set level, with
// row counts around the four-row kernels, vector counts around their group sizes, row
// widths with and without a SIMD tail, and guard values around every output row.
func TestDotRows(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, dim := range []int{64, 128, 20, 1} {
			for _, nq := range []int{0, 1, 2, 3, 4, 5, 9} {
				for _, n := range []int{0, 1, 2, 3, 4, 5, 8, 11, 20, 23, 330, 331} {
					f16 := n%2 == 1
					name := fmt.Sprintf("dim=%d nq=%d n=%d f16=%v", dim, nq, n, f16)
					rows := randF32(r, n*dim)
					q := randF32(r, nq*dim)
					const guard = -7.5
					dstride := n + 2
					dst := make([]float32, nq*dstride+1)
					for i := range dst {
						dst[i] = guard
					}
					half := make([]uint16, len(rows))
					F32ToF16Slice(half, rows)
					if f16 {
						for i, h := range half {
							rows[i] = F16ToF32(h)
						}
						DotRowsF16(dst, dstride, q, nq, half, dim)
					} else {
						DotRows(dst, dstride, q, nq, rows, dim)
					}
					for v := range nq {
						for i := range dstride {
							got := dst[v*dstride+i]
							if i >= n {
								if got != guard {
									t.Fatalf("%s: vector %d wrote %v past its rows", name, v, got)
								}
								continue
							}
							var want, mag float64
							for d := range dim {
								x := float64(q[v*dim+d]) * float64(rows[i*dim+d])
								want += x
								mag += math.Abs(x)
							}
							if math.Abs(float64(got)-want) > 1e-5*mag+1e-30 {
								t.Fatalf("%s: dot of vector %d and row %d = %v, want %v", name, v, i, got, want)
							}
						}
					}
					if dst[len(dst)-1] != guard {
						t.Fatalf("%s: wrote past the last vector", name)
					}
				}
			}
		}
	})
}

// BenchmarkDotRows compares DotRows with one Dot per row and vector on a lookup's first
// level at 32K keys: 328 centroids of 64 values against the 3 query vectors of a KV head.
func BenchmarkDotRows(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const dim, n, nq = 64, 328, 3
	rows := randF32(r, n*dim)
	q := randF32(r, nq*dim)
	dst := make([]float32, nq*n)
	b.Run("rows", func(b *testing.B) {
		b.SetBytes(4 * n * dim)
		for b.Loop() {
			DotRows(dst, n, q, nq, rows, dim)
		}
	})
	b.Run("dot", func(b *testing.B) {
		b.SetBytes(4 * n * dim)
		for b.Loop() {
			for i := range n {
				for v := range nq {
					dst[v*n+i] = Dot(q[v*dim:(v+1)*dim], rows[i*dim:(i+1)*dim])
				}
			}
		}
	})
}
