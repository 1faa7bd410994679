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
	"squeeze/runtime/internal/threadcpu"
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

// BenchmarkMatMulAttention runs, on one thread, the two products of a decoding token's
// attention to an f16 cache at the depths of gocode-shared's pipeline benchmark (a
// 512-token prompt, caches of 656 positions): the keys (depth x 64) times a KV head's 3
// query vectors, and the transposed values (64 x depth, rows a cache's length apart)
// times the 3 probability vectors, whose last depth%16 columns take the scalar tail;
// the keys also through the per-4-row kernels that the looped ones replace. It reports
// the flops per second, also per second of the thread's CPU time.
func BenchmarkMatMulAttention(b *testing.B) {
	const hd, group, capacity = 64, 3, 656
	r := rand.New(rand.NewPCG(5, 7))
	p := NewPool(1)
	defer p.Close()
	vals, err := Quantize(gguf.TypeF16, randF32(r, hd*capacity))
	if err != nil {
		b.Fatal(err)
	}
	keyData, err := Quantize(gguf.TypeF16, randF32(r, hd*capacity))
	if err != nil {
		b.Fatal(err)
	}
	for _, depth := range []int{528, 541} {
		keys := &Matrix{Type: gguf.TypeF16, Rows: depth, Cols: hd, RowBytes: 2 * hd, Data: keyData[:2*hd*depth]}
		valuesT := &Matrix{Type: gguf.TypeF16, Rows: hd, Cols: depth, RowBytes: 2 * capacity, Data: vals}
		q := randF32(r, group*hd)
		scores := randF32(r, group*depth)
		out := make([]float32, group*hd)
		// Each case runs on this thread (a pool of one), timed by its CPU time too.
		var cpu0 time.Duration
		start := func(b *testing.B) {
			runtime.LockOSThread()
			cpu0 = threadcpu.Now()
		}
		flops := func(b *testing.B) {
			reportFlops(b, 2*float64(depth*hd*group)*float64(b.N), cpu0)
			runtime.UnlockOSThread()
		}
		b.Run(fmt.Sprintf("depth=%d/keys", depth), func(b *testing.B) {
			start(b)
			for b.Loop() {
				MatMul(p, scores, keys, q, group)
			}
			flops(b)
		})
		b.Run(fmt.Sprintf("depth=%d/keys-per-4-rows", depth), func(b *testing.B) {
			saved := loopMaxCols
			loopMaxCols = 0
			defer func() { loopMaxCols = saved }()
			start(b)
			for b.Loop() {
				MatMul(p, scores, keys, q, group)
			}
			flops(b)
		})
		b.Run(fmt.Sprintf("depth=%d/values", depth), func(b *testing.B) {
			start(b)
			for b.Loop() {
				MatMul(p, out, valuesT, scores, group)
			}
			flops(b)
		})
	}
}

// TestTailDots checks tailDots bitwise against the scalar tail it replaces (each
// element decoded alone, one product and one sum at a time per row and vector), for
// every float kind, tail length and vector count, with rows that end at their tail (no
// room for a whole-width conversion) and rows with some or ample room past it.
func TestTailDots(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(41, 42))
		scratch := make([]float32, 64)
		for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16} {
			kind, _ := floatKind(typ)
			for _, tl := range []int{1, 5, 7, 15} {
				for _, room := range []int{0, 3, 40} {
					for _, nv := range []int{1, 2, 3, 4, 7} {
						const nk, cnt, q = 32, 3, 5
						cols := nk + tl
						rowElems := cols + room
						enc, err := Quantize(typ, randF32(r, 4*q*rowElems))
						if err != nil {
							t.Fatal(err)
						}
						rb := len(enc) / (4 * q)
						x := randF32(r, nv*cols)
						got := randF32(r, nv*4*q)
						want := slices.Clone(got)
						tailDots(scratch, got, 4*q, enc, rb, cnt, q, x, cols, nk, cols, nv, kind)
						for i := range cnt {
							for k := range 4 {
								row := enc[(i+k*q)*rb : (i+k*q+1)*rb]
								for v := range nv {
									s := want[v*4*q+i+k*q]
									for c := nk; c < cols; c++ {
										s += x[v*cols+c] * elemAt(row, c, kind)
									}
									want[v*4*q+i+k*q] = s
								}
							}
						}
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%v tail %d room %d nv %d: dst[%d] = %v, want %v", typ, tl, room, nv, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	})
}

// randMatrix returns a rows x cols matrix of type typ with random weights from r.
func randMatrix(tb testing.TB, r *rand.Rand, typ gguf.Type, rows, cols int) *Matrix {
	tb.Helper()
	enc, err := Quantize(typ, randF32(r, rows*cols))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := NewMatrix(typ, rows, cols, enc)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestMatVecRows checks that MatVecRows gives every requested row bitwise the value of
// MatVec on the same pool, for the plain float types at every instruction-set level and
// several pool sizes, on shapes whose rows split unevenly across the workers and into
// 4-row groups and whose columns leave a scalar tail; and that it declines other types.
func TestMatVecRows(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(43, 44))
		for _, threads := range []int{1, 2, 3, 5} {
			p := NewPool(threads)
			defer p.Close()
			for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16} {
				for _, sh := range []struct{ rows, cols int }{{1, 7}, {7, 16}, {38, 45}, {131, 64}, {517, 97}} {
					m := randMatrix(t, r, typ, sh.rows, sh.cols)
					x := randF32(r, sh.cols)
					want := make([]float32, sh.rows)
					MatVec(p, want, m, x)
					rows := make([]int, sh.rows)
					for i := range rows {
						rows[i] = sh.rows - 1 - i
					}
					got := make([]float32, len(rows))
					if !MatVecRows(p, got, m, x, rows) {
						t.Fatalf("%v: MatVecRows declined a float type", typ)
					}
					for k, row := range rows {
						if math.Float32bits(got[k]) != math.Float32bits(want[row]) {
							t.Fatalf("%v %dx%d threads=%d: row %d = %v, MatVec %v", typ, sh.rows, sh.cols, threads, row, got[k], want[row])
						}
					}
				}
			}
		}
		q := randMatrix(t, r, gguf.TypeQ8_0, 4, 32)
		p := NewPool(1)
		defer p.Close()
		if MatVecRows(p, make([]float32, 1), q, randF32(r, 32), []int{0}) {
			t.Error("MatVecRows computed rows of a Q8_0 matrix")
		}
		// A few rows of a head, as GreedyHead reads them every step, allocate nothing
		// through the SIMD kernels (the reference decodes each row into a new slice).
		m := randMatrix(t, r, gguf.TypeF16, 64, 96)
		x, got, rows := randF32(r, 96), make([]float32, 3), []int{1, 30, 63}
		if allocs := testing.AllocsPerRun(20, func() { MatVecRows(p, got, m, x, rows) }); fk != nil && allocs != 0 {
			t.Errorf("MatVecRows of %d rows allocates %v times", len(rows), allocs)
		}
	})
}

// TestI8Dots checks I8Matrix.Dots (and DotsRange, on part of the rows) against the
// reference loop on random rows of int8 (extreme values included) and bytes, at every
// level and pool size, with row counts that leave rows outside the 4-row kernel and
// widths that leave a tail past 64.
func TestI8Dots(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(45, 46))
		for _, threads := range []int{1, 2, 3} {
			p := NewPool(threads)
			defer p.Close()
			for _, sh := range []struct{ rows, cols int }{{0, 64}, {1, 5}, {5, 64}, {37, 130}, {300, 384}, {9, 0}} {
				data := make([]int8, sh.rows*sh.cols)
				for i := range data {
					data[i] = int8(r.IntN(256) - 128)
					if i%7 == 0 {
						data[i] = -128
					}
				}
				for _, n := range []int{1, 3} {
					x := make([]uint8, n*sh.cols)
					for i := range x {
						x[i] = uint8(r.IntN(256))
						if i%5 == 0 {
							x[i] = 255
						}
					}
					m, err := NewI8Matrix(data, sh.rows, sh.cols)
					if err != nil {
						t.Fatal(err)
					}
					got := make([]int32, n*sh.rows+1)
					got[n*sh.rows] = -7
					m.Dots(p, got, x, n)
					want := make([]int32, n*sh.rows)
					for v := range n {
						dotRowsI8Ref(want[v*sh.rows:(v+1)*sh.rows], data, sh.cols, x[v*sh.cols:(v+1)*sh.cols])
					}
					if !slices.Equal(got[:n*sh.rows], want) || got[n*sh.rows] != -7 {
						t.Fatalf("%dx%d n=%d threads=%d: Dots %v, want %v", sh.rows, sh.cols, n, threads, got, want)
					}
					// DotsRange writes its rows of every vector and nothing else.
					lo, hi := sh.rows/3, sh.rows-sh.rows/4
					part := make([]int32, n*sh.rows)
					for i := range part {
						part[i] = -7
					}
					m.DotsRange(part, x, n, lo, hi)
					for v := range n {
						for i := range sh.rows {
							w := int32(-7)
							if i >= lo && i < hi {
								w = want[v*sh.rows+i]
							}
							if part[v*sh.rows+i] != w {
								t.Fatalf("%dx%d n=%d: DotsRange [%d, %d) vector %d row %d = %d, want %d", sh.rows, sh.cols, n, lo, hi, v, i, part[v*sh.rows+i], w)
							}
						}
					}
				}
			}
		}
		if _, err := NewI8Matrix(make([]int8, 5), 2, 3); err == nil {
			t.Error("NewI8Matrix accepted 5 values for 2 x 3")
		}
	})
}

// BenchmarkI8Dots times I8Matrix.Dots on an 8192 x 384 matrix (an LM head's shape) on
// one thread, for 1 and 3 vectors; throughput is matrix bytes per second, and integer
// multiply-adds (as two operations) per second of the thread's CPU time.
func BenchmarkI8Dots(b *testing.B) {
	r := rand.New(rand.NewPCG(47, 48))
	const rows, cols = 8192, 384
	data := make([]int8, rows*cols)
	for i := range data {
		data[i] = int8(r.IntN(255) - 127)
	}
	m, err := NewI8Matrix(data, rows, cols)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			x := make([]uint8, n*cols)
			dst := make([]int32, n*rows)
			p := NewPool(1)
			defer p.Close()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadcpu.Now()
			b.SetBytes(rows * cols)
			for b.Loop() {
				m.Dots(p, dst, x, n)
			}
			// Two "flops" per multiply-add, as reportFlops counts them.
			reportFlops(b, 2*float64(rows*cols*n)*float64(b.N), cpu0)
		})
	}
}

// TestMatMulLoop checks that MatMul's looped kernels for short rows (runLoop) give
// bitwise the outputs of the per-4-row multi-vector kernels they replace, for every
// float type, level, pool size and vector count, on row counts that leave rows outside
// the groups of 4.
func TestMatMulLoop(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(49, 50))
		for _, threads := range []int{1, 2, 3} {
			p := NewPool(threads)
			defer p.Close()
			for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16} {
				for _, sh := range []struct{ rows, cols int }{{3, 64}, {45, 16}, {541, 64}, {130, 128}} {
					m := randMatrix(t, r, typ, sh.rows, sh.cols)
					for _, n := range []int{1, 2, 3, 5, 9} {
						x := randF32(r, n*sh.cols)
						got, want := make([]float32, n*sh.rows), make([]float32, n*sh.rows)
						matMulForce = modeMulti
						MatMul(p, got, m, x, n)
						saved := loopMaxCols
						loopMaxCols = 0
						MatMul(p, want, m, x, n)
						loopMaxCols, matMulForce = saved, -1
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%v %dx%d n=%d threads=%d: output %d = %v, per-4-row kernels %v", typ, sh.rows, sh.cols, n, threads, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	})
}
