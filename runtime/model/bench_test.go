package model

import (
	"fmt"
	"testing"
	"time"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/testfiles"
)

// benchModels are the gocode-22m files the benchmarks run.
var benchModels = []struct{ name, file string }{
	{"F16", "gocode-22m.gguf"},
	{"Q8_0", "gocode-22m-q8_0.gguf"},
}

// BenchmarkPrefill measures prompt processing of 512 tokens from an empty cache (the last
// token's logits included), as llama-bench's pp512, with 2 threads.
func BenchmarkPrefill(b *testing.B) {
	const n = 512
	for _, bm := range benchModels {
		for _, kind := range []CacheType{CacheF16, CacheF32} {
			b.Run(fmt.Sprintf("%s/%v", bm.name, kind), func(b *testing.B) {
				m := openModel(b, "models", "gocode-22m", bm.file)
				p := kernels.NewPool(2)
				defer p.Close()
				c, err := m.NewCache(n, kind)
				if err != nil {
					b.Fatal(err)
				}
				tokens := randomTokens(n, m.Config.Vocab, 1)
				logits := make([]float32, m.Config.Vocab)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					c.Reset()
					if err := m.Forward(p, c, tokens, logits, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}

// BenchmarkDecode measures decoding one token at a time after depth tokens of context,
// as llama-bench's tg at depth 0 and 2048, with 2 threads.
func BenchmarkDecode(b *testing.B) {
	for _, bm := range benchModels {
		for _, kind := range []CacheType{CacheF16, CacheF32} {
			for _, depth := range []int{0, 2048} {
				b.Run(fmt.Sprintf("%s/%v/depth%d", bm.name, kind, depth), func(b *testing.B) {
					m := openModel(b, "models", "gocode-22m", bm.file)
					p := kernels.NewPool(2)
					defer p.Close()
					c, err := m.NewCache(depth+1, kind)
					if err != nil {
						b.Fatal(err)
					}
					if depth > 0 {
						if err := m.Forward(p, c, randomTokens(depth, m.Config.Vocab, 2), nil, nil); err != nil {
							b.Fatal(err)
						}
					}
					logits := make([]float32, m.Config.Vocab)
					tok := []int32{42}
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						if err := c.Truncate(depth); err != nil {
							b.Fatal(err)
						}
						if err := m.Forward(p, c, tok, logits, nil); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
				})
			}
		}
	}
}

// BenchmarkHugeWeights decodes with the F16 model as gguf.Open loads it (its weights
// copied into transparent huge pages, mmap.Huge) and as gguf.OpenMapped does (4 KB
// pages), 16 tokens from each in turns after 1024 tokens of context, 2 threads, and
// reports both rates and the speed-up.
func BenchmarkHugeWeights(b *testing.B) {
	huge := openModel(b, "models", "gocode-22m", "gocode-22m.gguf")
	f, err := gguf.OpenMapped(testfiles.Shared(b, "models", "gocode-22m", "gocode-22m.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	mapped, err := Load(f)
	if err != nil {
		b.Fatal(err)
	}
	p := kernels.NewPool(2)
	defer p.Close()
	const depth, gen, block = 1024, 256, 16
	models := []*Model{mapped, huge}
	caches := make([]*Cache, 2)
	context := randomTokens(depth, huge.Config.Vocab, 3)
	for i, m := range models {
		if caches[i], err = m.NewCache(depth+gen, CacheF16); err != nil {
			b.Fatal(err)
		}
		if err := m.Forward(p, caches[i], context, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	tokens := randomTokens(gen, huge.Config.Vocab, 4)
	logits := make([]float32, huge.Config.Vocab)
	var took [2]time.Duration
	for b.Loop() {
		for i := range caches {
			caches[i].Truncate(depth)
		}
		for lo := 0; lo < gen; lo += block {
			for i, m := range models {
				start := time.Now()
				for _, t := range tokens[lo : lo+block] {
					if err := m.Forward(p, caches[i], []int32{t}, logits, nil); err != nil {
						b.Fatal(err)
					}
				}
				took[i] += time.Since(start)
			}
		}
	}
	n := float64(gen * b.N)
	b.ReportMetric(n/took[0].Seconds(), "mapped-tok/s")
	b.ReportMetric(n/took[1].Seconds(), "huge-tok/s")
	b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "speedup")
}

// BenchmarkSharedStages times an exact block period (4 layers) of ForwardLayers on
// gocode-shared after 512 tokens, for rows at three depths (as a pipelined step runs
// them: 1 or 3 per depth) against as many rows at one depth: rows at other depths
// attend to other layers' keys and values. Each case's fastest iteration
// (interleaved), in ms.
func BenchmarkSharedStages(b *testing.B) {
	m := openModel(b, "models", "gocode-shared", "gocode-shared.gguf")
	p := kernels.NewPool(2)
	defer p.Close()
	const n = 512
	c, err := m.NewCache(n+16, CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Forward(p, c, randomTokens(n, m.Config.Vocab, 3), nil, nil); err != nil {
		b.Fatal(err)
	}
	dim, period := m.Config.Dim, m.BlockPeriod()
	x := make([]float32, 9*dim)
	opt := &Options{Exact: true}
	for _, per := range []int{1, 3} {
		b.Run(fmt.Sprintf("rows=%d", 3*per), func(b *testing.B) {
			one := []Stage{{Layer: 0, Pos: n, Rows: 3 * per}}
			mixed := []Stage{{Layer: 2 * period, Pos: n, Rows: per}, {Layer: period, Pos: n + per, Rows: per}, {Layer: 0, Pos: n + 2*per, Rows: per}}
			cases := []struct {
				name   string
				stages []Stage
			}{{"one", one}, {"mixed", mixed}}
			best := make([]float64, len(cases))
			for b.Loop() {
				for i, cs := range cases {
					if err := m.Embed(x, randomTokens(3*per, m.Config.Vocab, 4)); err != nil {
						b.Fatal(err)
					}
					t0 := time.Now()
					if err := m.ForwardLayers(p, c, x[:3*per*dim], cs.stages, period, opt); err != nil {
						b.Fatal(err)
					}
					if d := time.Since(t0).Seconds() * 1e3; best[i] == 0 || d < best[i] {
						best[i] = d
					}
				}
			}
			for i, cs := range cases {
				b.ReportMetric(best[i], cs.name+"-ms")
			}
		})
	}
}
