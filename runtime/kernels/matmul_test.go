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

// BenchmarkMatMulAttention runs, on one thread, the two products of a decoding token's
// attention to an f16 cache at the depths of gocode-shared's pipeline benchmark (a
// 512-token prompt, caches of 656 positions): the keys (depth x 64) times a KV head's 3
// query vectors, and the transposed values (64 x depth, rows a cache's length apart)
// times the 3 probability vectors, whose last depth%16 columns take the scalar tail. It
// reports the multiply-adds per second.
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
		flops := func(b *testing.B) {
			b.ReportMetric(float64(depth*hd*group)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFMA/s")
		}
		b.Run(fmt.Sprintf("depth=%d/keys", depth), func(b *testing.B) {
			for b.Loop() {
				MatMul(p, scores, keys, q, group)
			}
			flops(b)
		})
		b.Run(fmt.Sprintf("depth=%d/values", depth), func(b *testing.B) {
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
		scratch := make([]float32, 32)
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
