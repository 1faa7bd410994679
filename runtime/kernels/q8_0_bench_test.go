package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"squeeze/runtime/gguf"
)

// q8fBenchLevels runs bench at each instruction-set level (avx512, avx2, ref) as
// sub-benchmarks, so the fast paths are compared with the reference.
func q8fBenchLevels(b *testing.B, bench func(b *testing.B)) {
	saved := cpuHas
	defer func() { cpuHas = saved; reinit() }()
	levels := []struct {
		name string
		on   bool
		f    features
	}{
		{"avx512", saved.AVX512, saved},
		{"avx2", saved.AVX2FMA, features{AVX2FMA: true}},
		{"ref", true, features{}},
	}
	for _, l := range levels {
		if !l.on {
			continue
		}
		cpuHas = l.f
		reinit()
		b.Run(l.name, bench)
	}
}

// q8fLoop runs body b.N times; on one thread it also reports the rate against the
// thread's CPU time (GB/s-cpu), steadier than wall time on a shared machine.
func q8fLoop(b *testing.B, bytes int, oneThread bool, body func()) {
	b.SetBytes(int64(bytes))
	if oneThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	start := q8fThreadCPU()
	for b.Loop() {
		body()
	}
	if cpu := q8fThreadCPU() - start; oneThread && cpu > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/cpu.Seconds()/1e9, "GB/s-cpu")
	}
}

// BenchmarkQ8FamilyMatVec measures the decode product of gocode-22m's matrix shapes per
// format, thread count and level; throughput is weight bytes per second. "hot" reuses
// one matrix (it stays in cache); "cold" cycles through copies totalling 128 MB, more
// than the last-level cache, as decoding a model does.
func BenchmarkQ8FamilyMatVec(b *testing.B) {
	types := []gguf.Type{gguf.TypeQ8_0, gguf.TypeQ5_0, gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_1}
	shapes := []struct{ rows, cols int }{{8192, 384}, {1024, 384}, {384, 1024}}
	for _, typ := range types {
		for _, sh := range shapes {
			for _, cache := range []string{"hot", "cold"} {
				for _, threads := range []int{1, 2} {
					name := fmt.Sprintf("%v/%dx%d/%s/t%d", typ, sh.rows, sh.cols, cache, threads)
					b.Run(name, func(b *testing.B) {
						rng := rand.New(rand.NewPCG(1, 2))
						enc, err := Quantize(typ, q8fRandom(rng, sh.rows*sh.cols, 0.05))
						if err != nil {
							b.Fatal(err)
						}
						copies := 1
						if cache == "cold" {
							copies = max(1, (128<<20)/len(enc))
						}
						ms := make([]*Matrix, copies)
						for i := range ms {
							data := append([]byte(nil), enc...)
							if ms[i], err = NewMatrix(typ, sh.rows, sh.cols, data); err != nil {
								b.Fatal(err)
							}
						}
						x := q8fRandom(rng, sh.cols, 1)
						dst := make([]float32, sh.rows)
						p := NewPool(threads)
						defer p.Close()
						q8fBenchLevels(b, func(b *testing.B) {
							i := 0
							q8fLoop(b, len(enc), threads == 1, func() {
								MatVec(p, dst, ms[i], x)
								if i++; i == len(ms) {
									i = 0
								}
							})
						})
					})
				}
			}
		}
	}
}

// BenchmarkQ8FamilyDequant measures decoding a 1024x384 matrix to f32 (the batched
// path dequantizes weight panels); throughput is encoded bytes per second.
func BenchmarkQ8FamilyDequant(b *testing.B) {
	for _, typ := range []gguf.Type{gguf.TypeQ8_0, gguf.TypeQ5_0, gguf.TypeQ4_0} {
		b.Run(typ.String(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			src := q8fRandom(rng, 1024*384, 0.05)
			enc, err := Quantize(typ, src)
			if err != nil {
				b.Fatal(err)
			}
			q8fBenchLevels(b, func(b *testing.B) {
				q8fLoop(b, len(enc), true, func() { formats[typ].dequant(src, enc) })
			})
		})
	}
}

// BenchmarkQ8FamilyDotRows measures dotRows alone (one thread, no pool, activation
// prepared once) on a 256x384 matrix that stays in the first-level caches' reach.
func BenchmarkQ8FamilyDotRows(b *testing.B) {
	for _, typ := range []gguf.Type{gguf.TypeQ8_0, gguf.TypeQ5_0, gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_1} {
		b.Run(typ.String(), func(b *testing.B) {
			const rows, cols = 256, 384
			rng := rand.New(rand.NewPCG(5, 6))
			enc, err := Quantize(typ, q8fRandom(rng, rows*cols, 0.05))
			if err != nil {
				b.Fatal(err)
			}
			x := q8fRandom(rng, cols, 1)
			dst := make([]float32, rows)
			rb, _ := typ.RowBytes(cols)
			q8fBenchLevels(b, func(b *testing.B) {
				a := &Activation{F32: x}
				formats[typ].prepare(a)
				q8fLoop(b, len(enc), true, func() { formats[typ].dotRows(dst, enc, rb, a) })
			})
		})
	}
}
