package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"squeeze/runtime/gguf"

	"squeeze/runtime/internal/threadcpu"
)

// benchRef runs bench once with the fastest kernels and once with the pure-Go
// reference, as sub-benchmarks "simd" and "ref".
func benchRef(b *testing.B, bench func(b *testing.B)) {
	saved := cpuHas
	defer func() { cpuHas = saved; reinit() }()
	b.Run("simd", bench)
	cpuHas = features{}
	reinit()
	b.Run("ref", bench)
}

// gocode-22m's matrix shapes (rows x cols): attention and FFN up, FFN down, output.
var benchShapes = []struct{ rows, cols int }{{1024, 384}, {384, 1024}, {8192, 384}}

func benchMatrix(b *testing.B, typ gguf.Type, rows, cols int) *Matrix {
	r := rand.New(rand.NewPCG(1, 1))
	enc, err := Quantize(typ, randF32(r, rows*cols))
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMatrix(typ, rows, cols, enc)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkMatVecFloat measures the decode path (one vector) per plain float format;
// the reported throughput is weight bytes per second.
func BenchmarkMatVecFloat(b *testing.B) {
	for _, typ := range floatTypes {
		for _, sh := range benchShapes {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%v/%dx%d/t%d", typ, sh.rows, sh.cols, threads), func(b *testing.B) {
					m := benchMatrix(b, typ, sh.rows, sh.cols)
					p := NewPool(threads)
					defer p.Close()
					x := randF32(rand.New(rand.NewPCG(2, 2)), sh.cols)
					dst := make([]float32, sh.rows)
					b.SetBytes(int64(len(m.Data)))
					b.ReportAllocs()
					for b.Loop() {
						MatVec(p, dst, m, x)
					}
				})
			}
		}
	}
}

// BenchmarkMatVecCold streams through 48 MiB of matrices (more than the L3 cache), one
// MatVec per matrix, as decoding a token does: the reported GB/s is what memory
// bandwidth allows (floor: about 36 GB/s with one thread, 60 GB/s with two).
func BenchmarkMatVecCold(b *testing.B) {
	// The machine's read bandwidth at the moment, for comparison: one streaming Dot
	// over the same 48 MiB.
	b.Run("stream", func(b *testing.B) {
		x := make([]float32, (48<<20)/4)
		for i := range x {
			x[i] = 1 // written, so not the shared zero page
		}
		y := make([]float32, 1<<14)
		b.SetBytes(int64(4 * len(x)))
		for b.Loop() {
			for i := 0; i+len(y) <= len(x); i += len(y) {
				y[0] += Dot(x[i:i+len(y)], y)
			}
		}
	})
	for _, typ := range floatTypes {
		for _, n := range []int{1, 2, 4} {
			for _, threads := range []int{1, 2} {
				if n > 1 && typ != gguf.TypeF16 {
					continue
				}
				b.Run(fmt.Sprintf("%v/1024x384/n%d/t%d", typ, n, threads), func(b *testing.B) {
					benchCold(b, typ, n, threads)
				})
			}
		}
	}
}

// benchCold is one BenchmarkMatVecCold case: n vectors against matrices that come from
// memory each time.
func benchCold(b *testing.B, typ gguf.Type, n, threads int) {
	one := benchMatrix(b, typ, 1024, 384)
	ms := make([]*Matrix, (48<<20)/len(one.Data))
	for i := range ms {
		ms[i] = &Matrix{Type: typ, Rows: one.Rows, Cols: one.Cols, RowBytes: one.RowBytes, Data: append([]byte(nil), one.Data...)}
	}
	p := NewPool(threads)
	defer p.Close()
	x := randF32(rand.New(rand.NewPCG(2, 2)), n*one.Cols)
	dst := make([]float32, n*one.Rows)
	b.SetBytes(int64(len(one.Data)))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadcpu.Now()
	i := 0
	for b.Loop() {
		MatMul(p, dst, ms[i], x, n)
		i = (i + 1) % len(ms)
	}
	if cpu := threadcpu.Now() - cpu0; cpu > 100*time.Millisecond && threads == 1 {
		b.ReportMetric(float64(len(one.Data))*float64(b.N)/cpu.Seconds()/1e9, "GB/s-cpu")
	}
}

// BenchmarkMatMulF16 measures batched products on F16 weights (speculative
// verification n = 2..8, prompt processing n = 512) and reports GFLOP/s.
func BenchmarkMatMulF16(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8, 16, 64, 512} {
		for _, sh := range benchShapes {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("n%d/%dx%d/t%d", n, sh.rows, sh.cols, threads), func(b *testing.B) {
					benchMatMul(b, gguf.TypeF16, sh.rows, sh.cols, n, threads)
				})
			}
		}
	}
}

// matMulPaths names MatMul's paths for benchmarks that compare them.
var matMulPaths = []struct {
	name string
	mode int
}{{"dotrows", modeDotRows}, {"multi", modeMulti}, {"deqmulti", modeDequantMulti}, {"gemm", modeGEMM}}

// BenchmarkMatMulPaths compares MatMul's paths by batch size, for the weight types of
// the reference models (where deqMultiMinN sits).
func BenchmarkMatMulPaths(b *testing.B) {
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeQ8_0, gguf.TypeQ4_K} {
		if formats[typ] == nil {
			continue
		}
		for _, n := range []int{2, 4, 8, 16, 64, 512} {
			for _, path := range matMulPaths {
				if _, isFloat := floatKind(typ); path.mode == modeMulti && !isFloat {
					continue
				}
				b.Run(fmt.Sprintf("%v/n%d/%s", typ, n, path.name), func(b *testing.B) {
					defer func() { matMulForce = -1 }()
					matMulForce = path.mode
					benchMatMul(b, typ, 384, 1024, n, 1)
				})
			}
		}
	}
}

// BenchmarkMatMulTypes runs prompt-sized batches on every registered format.
func BenchmarkMatMulTypes(b *testing.B) {
	for typ := range formats {
		for _, path := range matMulPaths {
			b.Run(fmt.Sprintf("%v/n512/384x1024/%s", typ, path.name), func(b *testing.B) {
				defer func() { matMulForce = -1 }()
				matMulForce = path.mode
				benchMatMul(b, typ, 384, 1024, 512, 1)
			})
		}
	}
}

func benchMatMul(b *testing.B, typ gguf.Type, rows, cols, n, threads int) {
	m := benchMatrix(b, typ, rows, cols)
	p := NewPool(threads)
	defer p.Close()
	x := randF32(rand.New(rand.NewPCG(2, 2)), n*cols)
	dst := make([]float32, n*rows)
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadcpu.Now()
	for b.Loop() {
		MatMul(p, dst, m, x, n)
	}
	flop := 2 * float64(rows*cols*n) * float64(b.N)
	b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := threadcpu.Now() - cpu0; cpu > 100*time.Millisecond && threads == 1 {
		b.ReportMetric(flop/cpu.Seconds()/1e9, "GFLOP/s-cpu")
	}
}

// BenchmarkPoolFor measures the cost of handing out an empty parallel loop.
func BenchmarkPoolFor(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	fn := func(lo, hi int) {}
	b.ReportAllocs()
	for b.Loop() {
		p.For(64, 1, fn)
	}
}

// BenchmarkOps measures the vector kernels of attention at typical lengths.
func BenchmarkOps(b *testing.B) {
	for _, n := range []int{64, 256, 1024, 8192} {
		r := rand.New(rand.NewPCG(3, 3))
		x, y := randF32(r, n), randF32(r, n)
		h := make([]uint16, n)
		F32ToF16Slice(h, y)
		b.Run(fmt.Sprintf("Dot/%d", n), func(b *testing.B) {
			benchRef(b, func(b *testing.B) {
				b.SetBytes(int64(8 * n))
				for b.Loop() {
					Dot(x, y)
				}
			})
		})
		b.Run(fmt.Sprintf("DotF16/%d", n), func(b *testing.B) {
			benchRef(b, func(b *testing.B) {
				b.SetBytes(int64(6 * n))
				for b.Loop() {
					DotF16(x, h)
				}
			})
		})
		b.Run(fmt.Sprintf("Axpy/%d", n), func(b *testing.B) {
			benchRef(b, func(b *testing.B) {
				b.SetBytes(int64(12 * n))
				for b.Loop() {
					Axpy(0.5, x, y)
				}
			})
		})
		b.Run(fmt.Sprintf("AxpyF16/%d", n), func(b *testing.B) {
			benchRef(b, func(b *testing.B) {
				b.SetBytes(int64(10 * n))
				for b.Loop() {
					AxpyF16(0.5, h, y)
				}
			})
		})
		b.Run(fmt.Sprintf("Softmax/%d", n), func(b *testing.B) {
			benchRef(b, func(b *testing.B) {
				b.SetBytes(int64(4 * n))
				for b.Loop() {
					copy(y, x)
					Softmax(y)
				}
			})
		})
		b.Run(fmt.Sprintf("SiLUMul/%d", n), func(b *testing.B) {
			benchRef(b, func(b *testing.B) {
				b.SetBytes(int64(8 * n))
				for b.Loop() {
					copy(y, x)
					SiLUMul(y, x)
				}
			})
		})
	}
}

// BenchmarkPoolHandoff measures the cost of a parallel loop that follows some serial
// work, as the MatVecs of a decoded token do (attention and norms run in between).
// Compare with the serial/ case: the difference is the handoff.
func BenchmarkPoolHandoff(b *testing.B) {
	x := randF32(rand.New(rand.NewPCG(4, 4)), 2048)
	serial := func() {
		for range 8 {
			Softmax(x[:1024])
		}
	}
	var sink [2]float32
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			p := NewPool(threads)
			defer p.Close()
			fn := func(lo, hi int) {
				sink[lo] += Dot(x[lo*1024:lo*1024+64], x[:64])
			}
			for b.Loop() {
				serial()
				p.For(2, 1, fn)
			}
		})
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			serial()
		}
	})
}

// BenchmarkAttentionShapes runs the products of decoding at depth 2048 on an f16 KV
// cache as the model does them: the keys (2048 x 64) times a KV head's 3 query vectors,
// and the transposed values (64 x 2048, rows strided by a cache of 8192) times the 3
// probability vectors.
func BenchmarkAttentionShapes(b *testing.B) {
	const depth, hd, group, capacity = 2048, 64, 3, 8192
	r := rand.New(rand.NewPCG(5, 5))
	p := NewPool(1)
	defer p.Close()
	keys := benchMatrix(b, gguf.TypeF16, depth, hd)
	vals, err := Quantize(gguf.TypeF16, randF32(r, hd*capacity))
	if err != nil {
		b.Fatal(err)
	}
	valuesT := &Matrix{Type: gguf.TypeF16, Rows: hd, Cols: depth, RowBytes: 2 * capacity, Data: vals}
	q := randF32(r, group*hd)
	scores := randF32(r, group*depth)
	out := make([]float32, group*hd)
	b.Run("keys", func(b *testing.B) {
		b.SetBytes(int64(depth * hd * 2))
		for b.Loop() {
			MatMul(p, scores, keys, q, group)
		}
	})
	b.Run("values", func(b *testing.B) {
		b.SetBytes(int64(depth * hd * 2))
		for b.Loop() {
			MatMul(p, out, valuesT, scores, group)
		}
	})
}
