package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"squeeze/runtime/internal/threadcpu"
)

// reportFlops reports flop/s against wall time and, on a machine shared with other
// work, against the thread's CPU time since cpu0 (see threadcpu.Now).
func reportFlops(b *testing.B, flop float64, cpu0 time.Duration) {
	b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := threadcpu.Now() - cpu0; cpu > 100*time.Millisecond {
		b.ReportMetric(flop/cpu.Seconds()/1e9, "GFLOP/s-cpu")
	}
}

// BenchmarkAttend measures one thread's tiled attention of a block of 32 tokens x 3
// query heads (gocode-22m's group, head size 64) after depth positions, f16 source
// packed once outside the loop, and reports its arithmetic rate (two flops per
// multiply-add of the scores and the weighted values).
func BenchmarkAttend(b *testing.B) {
	const hd, per, tokens = 64, 3, 32
	for _, depth := range []int{0, 4096, 32768} {
		for _, tile := range []int{128, 256, 512} {
			b.Run(fmt.Sprintf("depth%d/tile%d", depth, tile), func(b *testing.B) {
				saved := attnTileKeys
				defer func() { attnTileKeys = saved }()
				attnTileKeys = tile
				r := rand.New(rand.NewPCG(1, 2))
				n := depth + tokens
				src := &KVHead{Keys16: make([]uint16, n*hd), Values16: make([]uint16, n*hd), Stride: n}
				F32ToF16Slice(src.Keys16, randF32(r, n*hd))
				F32ToF16Slice(src.Values16, randF32(r, n*hd))
				var kv AttnKV
				kv.Reset(hd, n)
				kv.Pack(src, 0, kv.Panels())
				q := randF32(r, tokens*per*hd)
				Scale(q, 0.125)
				out := make([]float32, len(q))
				var s AttnScratch
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0 := threadcpu.Now()
				for b.Loop() {
					s.Attend(&kv, q, tokens*per, per, depth+1, out, nil)
				}
				keys := float64(tokens)*float64(depth) + tokens*(tokens+1)/2
				reportFlops(b, 4*keys*per*hd*float64(b.N), cpu0)
			})
		}
	}
}

// BenchmarkAttnPack measures packing 4096 positions of an f16 key/value head.
func BenchmarkAttnPack(b *testing.B) {
	const hd, n = 64, 4096
	r := rand.New(rand.NewPCG(1, 2))
	src := &KVHead{Keys16: make([]uint16, n*hd), Values16: make([]uint16, n*hd), Stride: n}
	F32ToF16Slice(src.Keys16, randF32(r, n*hd))
	F32ToF16Slice(src.Values16, randF32(r, n*hd))
	var kv AttnKV
	b.SetBytes(2 * 2 * n * hd)
	for b.Loop() {
		kv.Reset(hd, n)
		kv.Pack(src, 0, kv.Panels())
	}
}

// BenchmarkGemmPeak measures the micro-kernel alone on data in L1 (k = 256, 12 rows of
// x, one panel): the arithmetic rate a tiled kernel can at best reach on one thread.
func BenchmarkGemmPeak(b *testing.B) {
	g := attnGemm()
	const k = 256
	r := rand.New(rand.NewPCG(1, 2))
	a := randF32(r, k*attnPanel)
	x := randF32(r, 12*k)
	c := make([]float32, 12*attnPanel)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadcpu.Now()
	for b.Loop() {
		for range 100 {
			for h := 0; h < attnPanel; h += g.nr {
				g.fn(k, &a[h], &x[0], k, &c[h], attnPanel)
			}
		}
	}
	reportFlops(b, float64(b.N)*100*2*k*float64(g.mr*attnPanel), cpu0)
}
