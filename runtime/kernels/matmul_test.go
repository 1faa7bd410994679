package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"squeeze/runtime/gguf"
)

// TestMatMul checks MatMul for every registered format, on the dotRows path and the
// tiled GEMM path, against float64 dot products of the reference-dequantized weights.
func TestMatMul(t *testing.T) {
	types := make([]gguf.Type, 0, len(formats))
	for typ := range formats {
		types = append(types, typ)
	}
	slices.Sort(types)
	shapes := []struct{ rows, blocks int }{{1, 1}, {5, 3}, {33, 1}, {70, 2}}
	if !testing.Short() {
		shapes = append(shapes, struct{ rows, blocks int }{97, 5})
	}
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, threads := range []int{1, 3} {
			p := NewPool(threads)
			defer p.Close()
			for _, typ := range types {
				bs := typ.BlockSize()
				tol := 1e-5
				if formats[typ].prepare != nil {
					tol = 2e-2 // activations are quantized too
				}
				for _, sh := range shapes {
					cols := sh.blocks * bs
					if bs == 1 {
						cols = 8*sh.blocks + 7 // odd widths for the plain formats
					}
					w := randF32(r, sh.rows*cols)
					enc, err := Quantize(typ, w)
					if err != nil {
						t.Fatal(err)
					}
					m, err := NewMatrix(typ, sh.rows, cols, bytesWithPoison(enc))
					if err != nil {
						t.Fatal(err)
					}
					deq := make([]float32, len(w))
					if err := Dequantize(typ, deq, enc); err != nil {
						t.Fatal(err)
					}
					for _, n := range []int{1, 2, 3, 7, 13, 25} {
						for _, mode := range []int{-1, modeDotRows, modeMulti, modeMulti + 100, modeDequantMulti, modeGEMM} {
							name := fmt.Sprintf("%v %dx%d n=%d threads=%d mode=%d", typ, sh.rows, cols, n, threads, mode)
							savedChunk, savedBlock := vectorChunkBytes, dotBlockBytes
							if mode == modeMulti+100 { // vectors in chunks of 4, rows in blocks of 8
								mode = modeMulti
								vectorChunkBytes = 16 * cols
								dotBlockBytes = 8 * m.RowBytes
							}
							x := withPoison(randF32(r, n*cols), nan)
							dst := make([]float32, n*sh.rows+3)
							for i := range dst {
								dst[i] = -99
							}
							matMulForce = mode
							MatMul(p, dst, m, x, n)
							matMulForce, vectorChunkBytes, dotBlockBytes = -1, savedChunk, savedBlock
							for v := range n {
								for row := range sh.rows {
									var want, scale float64
									for c := range cols {
										pr := float64(deq[row*cols+c]) * float64(x[v*cols+c])
										want += pr
										scale += math.Abs(pr)
									}
									if got := dst[v*sh.rows+row]; !closeTo(got, float32(want), float32(scale), tol) {
										t.Fatalf("%s: vector %d row %d = %v, want %v", name, v, row, got, want)
									}
								}
							}
							for _, g := range dst[n*sh.rows:] {
								if g != -99 {
									t.Fatalf("%s: wrote past n*rows", name)
								}
							}
						}
					}
				}
			}
		}
	})
}

// TestMatMulZeroCols covers the degenerate shapes.
func TestMatMulZeroCols(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	m, err := NewMatrix(gguf.TypeF16, 3, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := []float32{1, 2, 3, 4, 5, 6, 7}
	MatMul(p, dst, m, nil, 2)
	if want := []float32{0, 0, 0, 0, 0, 0, 7}; !slices.Equal(dst, want) {
		t.Fatalf("got %v, want %v", dst, want)
	}
	m0, _ := NewMatrix(gguf.TypeF32, 0, 4, nil)
	MatMul(p, dst[:0], m0, make([]float32, 8), 2)
}

func TestPoolFor(t *testing.T) {
	for _, threads := range []int{1, 2, 5} {
		p := NewPool(threads)
		for _, n := range []int{0, 1, 7, 64, 1000} {
			for _, grain := range []int{0, 1, 16} {
				hits := make([]int32, n)
				p.For(n, grain, func(lo, hi int) {
					if g := max(grain, 1); lo%g != 0 {
						t.Errorf("chunk start %d is not a multiple of grain %d", lo, g)
					}
					for i := lo; i < hi; i++ {
						hits[i]++
					}
				})
				for i, h := range hits {
					if h != 1 {
						t.Fatalf("threads=%d n=%d grain=%d: index %d ran %d times", threads, n, grain, i, h)
					}
				}
			}
		}
		p.Close()
		p.Close() // idempotent
	}
}

// TestMatVecNoAlloc checks that the decode path does not allocate per call.
func TestMatVecNoAlloc(t *testing.T) {
	if fk == nil {
		t.Skip("the reference dotRows allocates; only the SIMD paths promise not to")
	}
	p := NewPool(2)
	defer p.Close()
	for _, typ := range floatTypes {
		enc, _ := Quantize(typ, make([]float32, 64*96))
		m, _ := NewMatrix(typ, 64, 96, enc)
		x := make([]float32, 20*96)
		dst := make([]float32, 20*64)
		for _, n := range []int{1, 4, 8, 20} {
			MatMul(p, dst, m, x, n) // grows scratch once
			if a := testing.AllocsPerRun(50, func() { MatMul(p, dst, m, x, n) }); a != 0 {
				t.Errorf("%v n=%d: MatMul allocates %v times per call", typ, n, a)
			}
		}
	}
}

// TestPoolPark exercises the parked paths: calls spaced further apart than poolSpin,
// and Close on parked workers.
func TestPoolPark(t *testing.T) {
	p := NewPool(3)
	var sum [3]int
	for i := range 5 {
		time.Sleep(3 * poolSpin)
		p.For(3, 1, func(lo, hi int) { sum[lo] += hi - lo })
		if sum != [3]int{i + 1, i + 1, i + 1} {
			t.Fatalf("call %d: chunks ran %v times", i, sum)
		}
	}
	time.Sleep(3 * poolSpin)
	p.Close()
}

// TestPoolStress checks, over many calls of uneven work (some spaced past poolSpin so
// that both sides park), that For returns only after every chunk has run, and each
// exactly once; a second pool does not spin at all, so parking races with posting.
func TestPoolStress(t *testing.T) {
	calls := 2000
	if testing.Short() {
		calls = 500
	}
	for _, spin := range []time.Duration{poolSpin, 0} {
		saved := poolSpin
		poolSpin = spin
		p := NewPool(6) // more workers than cores: preemption widens every race window
		poolSpin = saved
		r := rand.New(rand.NewPCG(23, 24))
		var done [6]atomic.Int32
		for c := range calls {
			work := r.IntN(3)
			if c%97 == 0 {
				time.Sleep(2 * poolSpin)
			}
			p.For(len(done), 1, func(lo, hi int) {
				for range work * (lo + 1) * 300 {
					runtime.Gosched()
				}
				done[lo].Add(1)
			})
			for i := range done {
				if got := done[i].Load(); got != int32(c+1) {
					t.Fatalf("spin %v, call %d: chunk %d ran %d times when For returned", spin, c, i, got)
				}
			}
		}
		p.Close()
	}
}
