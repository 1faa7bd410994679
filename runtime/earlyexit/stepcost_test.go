package earlyexit

import (
	"fmt"
	"testing"
	"time"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest/testmodel"
)

// BenchmarkSharedStepCost times the parts of a pipelined step on gocode-shared after a
// 512-token prompt, each part's fastest of the iterations (interleaved, so a loaded
// machine disturbs them alike): a plain one-token Forward through all 12 layers
// (plain-ms), one block period (4 layers) of ForwardLayers for r = 1..9 rows at one
// depth (rN-x: relative to r = 1, whose time is r1-ms) and for 3 rows at the three
// depths of a full pipeline (mixed3-x), exact and batched, and the exact full LM head
// for one row (head-ms). Rolling back speculated tokens costs nothing to time: it
// moves the cache's length (Cache.SetLen).
//
// Rows at one depth share that depth's keys and values (the first row brings them into
// cache for the others); each further depth in a step reads its own layers of the KV
// cache: depth-ms, (mixed3 - r3)/2, is what a step pays for each depth past its first.
// A pipelined token then costs about steps x (r1 - row) + rows x row + (depths - steps)
// x depth-ms + the head, per token, with row = (r9 - r1)/8 and the counts of
// runtime/decode's BenchmarkGeneratePipelineGocodeShared (rows/tok, depths/tok).
func BenchmarkSharedStepCost(b *testing.B) {
	m, _, tok := testmodel.Shared(b, "gocode-shared")
	prompt := devPrompts(b, tok, 1, 512)[0]
	p := kernels.NewPool(2)
	defer p.Close()
	c, err := m.NewCache(len(prompt)+16, model.CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, 8*m.Config.Vocab)
	if err := m.Forward(p, c, prompt, logits, nil); err != nil {
		b.Fatal(err)
	}
	dim, period := m.Config.Dim, m.BlockPeriod()
	n := c.Len()
	x := make([]float32, 9*dim)
	for _, exact := range []bool{true, false} {
		b.Run(fmt.Sprintf("exact=%v", exact), func(b *testing.B) {
			opt := &model.Options{Exact: exact}
			var best [12]time.Duration
			keep := func(i int, t0 time.Time) {
				if d := time.Since(t0); best[i] == 0 || d < best[i] {
					best[i] = d
				}
			}
			for b.Loop() {
				t0 := time.Now()
				if err := m.Forward(p, c, prompt[100:101], logits, opt); err != nil {
					b.Fatal(err)
				}
				keep(0, t0)
				if err := c.Truncate(n); err != nil {
					b.Fatal(err)
				}
				for r := 1; r <= 9; r++ {
					if err := m.Embed(x, prompt[100:100+r]); err != nil {
						b.Fatal(err)
					}
					t0 := time.Now()
					if err := m.ForwardLayers(p, c, x[:r*dim], []model.Stage{{Layer: 0, Pos: n, Rows: r}}, period, opt); err != nil {
						b.Fatal(err)
					}
					keep(r, t0)
				}
				if err := m.Embed(x, prompt[100:103]); err != nil {
					b.Fatal(err)
				}
				mixed := []model.Stage{{Layer: 2 * period, Pos: n, Rows: 1}, {Layer: period, Pos: n + 1, Rows: 1}, {Layer: 0, Pos: n + 2, Rows: 1}}
				t0 = time.Now()
				if err := m.ForwardLayers(p, c, x[:3*dim], mixed, period, opt); err != nil {
					b.Fatal(err)
				}
				keep(11, t0)
				t0 = time.Now()
				m.HeadExact(p, x[:dim], 1, logits)
				keep(10, t0)
			}
			b.ReportMetric(float64(best[0].Microseconds())/1000, "plain-ms")
			b.ReportMetric(float64(best[1].Microseconds())/1000, "r1-ms")
			b.ReportMetric(float64(best[10].Microseconds())/1000, "head-ms")
			for r := 2; r <= 9; r++ {
				b.ReportMetric(float64(best[r])/float64(best[1]), fmt.Sprintf("r%d-x", r))
			}
			b.ReportMetric(float64(best[11])/float64(best[1]), "mixed3-x")
			b.ReportMetric(float64((best[11]-best[3]).Microseconds())/2000, "depth-ms")
		})
	}
}

// BenchmarkSharedStep runs one exact block period (4 layers) of ForwardLayers on
// gocode-shared after a 512-token prompt for rows=1, 3 and 6 rows at one depth, over and
// over: a step to profile (-cpuprofile) with nothing else in the loop.
func BenchmarkSharedStep(b *testing.B) {
	m, _, tok := testmodel.Shared(b, "gocode-shared")
	prompt := devPrompts(b, tok, 1, 512)[0]
	p := kernels.NewPool(2)
	defer p.Close()
	c, err := m.NewCache(len(prompt)+32, model.CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Forward(p, c, prompt, nil, nil); err != nil {
		b.Fatal(err)
	}
	dim, period, n := m.Config.Dim, m.BlockPeriod(), c.Len()
	x := make([]float32, 27*dim)
	for _, rows := range []int{1, 3, 6, 27} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			opt := &model.Options{Exact: true}
			stages := []model.Stage{{Layer: 0, Pos: n, Rows: rows}}
			for b.Loop() {
				if err := m.Embed(x, prompt[100:100+rows]); err != nil {
					b.Fatal(err)
				}
				if err := m.ForwardLayers(p, c, x[:rows*dim], stages, period, opt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSharedHead compares, on gocode-shared's hidden states after a 512-token
// prompt, the two ways to the greedy tokens of n completed rows that a pipeline step
// verifies: HeadExact (every logit, exact) and model.GreedyHead (8-bit bounds, then the
// exact logits of the few candidates); each is timed by its fastest iteration
// (interleaved), in ms.
func BenchmarkSharedHead(b *testing.B) {
	m, _, tok := testmodel.Shared(b, "gocode-shared")
	prompt := devPrompts(b, tok, 1, 512)[0]
	p := kernels.NewPool(2)
	defer p.Close()
	gh := m.GreedyHead()
	if gh == nil {
		b.Skip("no GreedyHead on this CPU")
	}
	dim, vocab := m.Config.Dim, m.Config.Vocab
	const n = 9
	hidden := make([]float32, n*dim)
	c, err := m.NewCache(len(prompt), model.CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	opt := &model.Options{Observe: func(s *model.LayerState) {
		if s.Layer == m.Config.Layers-1 {
			copy(hidden, s.Hidden[(s.Tokens-n)*dim:])
		}
	}}
	if err := m.Forward(p, c, prompt, nil, opt); err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, n*vocab)
	h := make([]float32, n*dim)
	out := make([]int32, n)
	for _, rows := range []int{1, 2, 3, 9} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			var exact, greedy time.Duration
			for b.Loop() {
				copy(h, hidden)
				t0 := time.Now()
				m.HeadExact(p, h[:rows*dim], rows, logits[:rows*vocab])
				if d := time.Since(t0); exact == 0 || d < exact {
					exact = d
				}
				copy(h, hidden)
				t0 = time.Now()
				gh.Argmax(p, h[:rows*dim], rows, out[:rows])
				if d := time.Since(t0); greedy == 0 || d < greedy {
					greedy = d
				}
			}
			b.ReportMetric(exact.Seconds()*1e3, "exact-ms")
			b.ReportMetric(greedy.Seconds()*1e3, "greedy-ms")
		})
	}
}
