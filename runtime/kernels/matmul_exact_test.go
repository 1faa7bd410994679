package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/internal/threadcpu"
)

// TestMatMulExact checks that MatMulExact gives every vector of a batch bitwise the
// outputs of MatMul with that vector alone, for every format, instruction-set level,
// pool size and batch size, on shapes whose rows split unevenly across the workers and
// into 4-row groups.
func TestMatMulExact(t *testing.T) {
	types := make([]gguf.Type, 0, len(formats))
	for typ := range formats {
		types = append(types, typ)
	}
	slices.Sort(types)
	shapes := []struct{ rows, blocks int }{{1, 1}, {7, 2}, {38, 1}, {131, 3}}
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, threads := range []int{1, 2, 5} {
			p := NewPool(threads)
			defer p.Close()
			for _, typ := range types {
				for _, sh := range shapes {
					cols := sh.blocks * typ.BlockSize()
					if typ.BlockSize() == 1 {
						cols = 16*sh.blocks + 5
					}
					enc, err := Quantize(typ, randF32(r, sh.rows*cols))
					if err != nil {
						t.Fatal(err)
					}
					m, err := NewMatrix(typ, sh.rows, cols, enc)
					if err != nil {
						t.Fatal(err)
					}
					for _, n := range []int{2, 3, 5, 9, 30, 64} {
						name := fmt.Sprintf("%v %dx%d n=%d threads=%d", typ, sh.rows, cols, n, threads)
						x := randF32(r, n*cols)
						got := make([]float32, n*sh.rows)
						MatMulExact(p, got, m, x, n)
						one := make([]float32, sh.rows)
						for v := range n {
							MatVec(p, one, m, x[v*cols:(v+1)*cols])
							for row, want := range one {
								if g := got[v*sh.rows+row]; g != want {
									t.Fatalf("%s: vector %d row %d = %v, alone %v", name, v, row, g, want)
								}
							}
						}
					}
				}
			}
		}
	})
}

// BenchmarkMatMulExact compares, on gocode-22m's largest shape (the 8192 x 384 f16 LM
// head), MatMulExact against MatMul (batched kernels) and n MatVec calls.
func BenchmarkMatMulExact(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const rows, cols = 8192, 384
	enc, err := Quantize(gguf.TypeF16, randF32(r, rows*cols))
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMatrix(gguf.TypeF16, rows, cols, enc)
	if err != nil {
		b.Fatal(err)
	}
	p := NewPool(1)
	defer p.Close()
	for _, n := range []int{1, 2, 4, 8} {
		x := randF32(r, n*cols)
		dst := make([]float32, n*rows)
		for _, c := range []struct {
			name string
			fn   func()
		}{
			{"exact", func() { MatMulExact(p, dst, m, x, n) }},
			{"batched", func() { MatMul(p, dst, m, x, n) }},
			{"matvec", func() {
				for v := range n {
					MatVec(p, dst[v*rows:(v+1)*rows], m, x[v*cols:(v+1)*cols])
				}
			}},
		} {
			b.Run(fmt.Sprintf("n=%d/%s", n, c.name), func(b *testing.B) {
				for b.Loop() {
					c.fn()
				}
			})
		}
	}
}

// BenchmarkMatMulExactHot times MatMulExact on one thread for f16 matrices of a
// gocode block's shapes that stay in L2 across iterations, n = 1..8 vectors, and reports
// the flops per second, also per second of the thread's CPU time (the FMA peak of an
// AVX-512 core that executes 512-bit operations as two 256-bit halves is 16
// multiply-adds, 32 flops, per cycle).
func BenchmarkMatMulExactHot(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range []struct{ rows, cols int }{{384, 384}, {1024, 384}, {384, 1024}} {
		enc, err := Quantize(gguf.TypeF16, randF32(r, sh.rows*sh.cols))
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewMatrix(gguf.TypeF16, sh.rows, sh.cols, enc)
		if err != nil {
			b.Fatal(err)
		}
		p := NewPool(1)
		defer p.Close()
		for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 27} {
			x := randF32(r, n*sh.cols)
			dst := make([]float32, n*sh.rows)
			b.Run(fmt.Sprintf("%dx%d/n=%d", sh.rows, sh.cols, n), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0 := threadcpu.Now()
				for b.Loop() {
					MatMulExact(p, dst, m, x, n)
				}
				// reportFlops counts two flops per multiply-add.
				reportFlops(b, 2*float64(sh.rows*sh.cols*n)*float64(b.N), cpu0)
			})
		}
	}
}
