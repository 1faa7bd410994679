package kvquant

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/sparse"
)

// benchRows returns n rows of dim as nuq3-like keys (NormalFloat, per channel, before
// RoPE, 1% outliers) and values (per token), and the same rows as F16Rows.
func benchRows(b *testing.B, n, dim, bits int) (keys, vals *Rows, fk, fv *sparse.F16Rows) {
	rng := rand.New(rand.NewPCG(1, 1))
	dt, err := NormalFloat(bits)
	if err != nil {
		b.Fatal(err)
	}
	x := randRows(rng, n, dim)
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(i)
	}
	rng.Shuffle(n, func(i, j int) { pos[i], pos[j] = pos[j], pos[i] })
	keys, err = Quantize(x, dim, Params{Type: dt, Axis: PerChannel, Outliers: 0.01, Pos: pos, RoPE: testRoPE(b, dim, n, false)})
	if err != nil {
		b.Fatal(err)
	}
	vals, err = Quantize(x, dim, Params{Type: dt, Axis: PerToken, Outliers: 0.01})
	if err != nil {
		b.Fatal(err)
	}
	return keys, vals, sparse.NewF16Rows(dim, x), sparse.NewF16Rows(dim, x)
}

// BenchmarkDots scores a query against 4096 keys of 64 values; BenchmarkAccumulate adds
// 4096 weighted values. The f16 rows are the baseline.
func BenchmarkDots(b *testing.B) {
	const n, dim = 4096, 64
	for _, bits := range []int{3, 4} {
		keys, _, fk, _ := benchRows(b, n, dim, bits)
		q := randVec(rand.New(rand.NewPCG(2, 2)), dim)
		dst := make([]float32, n)
		for _, r := range []struct {
			name string
			rows sparse.Rows
		}{{fmt.Sprintf("nuq%d", bits), keys}, {"f16", fk}} {
			b.Run(r.name, func(b *testing.B) {
				b.SetBytes(int64(n * dim))
				for b.Loop() {
					r.rows.Dots(dst, q, 0, n)
				}
			})
		}
	}
}

func BenchmarkAccumulate(b *testing.B) {
	const n, dim = 4096, 64
	for _, bits := range []int{3, 4} {
		_, vals, _, fv := benchRows(b, n, dim, bits)
		w := randVec(rand.New(rand.NewPCG(3, 3)), n)
		out := make([]float32, dim)
		for _, r := range []struct {
			name string
			rows sparse.Rows
		}{{fmt.Sprintf("nuq%d", bits), vals}, {"f16", fv}} {
			b.Run(r.name, func(b *testing.B) {
				b.SetBytes(int64(n * dim))
				for b.Loop() {
					r.rows.Accumulate(out, w, 0, n)
				}
			})
		}
	}
}
