package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/kernels"
)

// TestAttentionRowsOneToken compares attentionRows with its reference, Cache.attention
// called for each row alone (n = 1): rows at several layers and positions, random
// queries, bitwise equal outputs and log-sum-exps, on pools whose threads outnumber the
// KV heads (the keys split in parts) and not, with f32 and f16 caches.
func TestAttentionRowsOneToken(t *testing.T) {
	for _, kv := range []int{1, 2} {
		spec := partialSpec
		spec.KVHeads, spec.Context = kv, 1024
		m := loadSpec(t, spec)
		cfg := &m.Config
		qDim, heads := cfg.QDim(), cfg.Heads
		for _, kind := range []CacheType{CacheF32, CacheF16} {
			for _, threads := range []int{1, 2, 3, 5} {
				p := kernels.NewPool(threads)
				c, err := m.NewCache(900, kind)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Forward(p, c, randomTokens(900, cfg.Vocab, 3), nil, nil); err != nil {
					t.Fatal(err)
				}
				rows := []attnRow{{0, 0, 0}, {1, 3, 899}, {2, 5, 255}, {3, 5, 256}, {4, 1, 700}, {5, 2, 1}}
				n := len(rows)
				c.ws.ensure(c, n, threads)
				c.ws.ensurePrefix(n, cfg)
				q := randomFloats(n*qDim, 11)
				want, wantLSE := make([]float32, n*qDim), make([]float32, n*heads)
				for _, r := range rows {
					c.ws.q = q[r.row*qDim : (r.row+1)*qDim]
					c.ws.att = want[r.row*qDim : (r.row+1)*qDim]
					c.ws.attLSE = wantLSE[r.row*heads : (r.row+1)*heads]
					c.attention(p, r.layer, r.pos, 1, true)
				}
				got, gotLSE := make([]float32, n*qDim), make([]float32, n*heads)
				c.ws.q, c.ws.att, c.ws.attLSE = q, got, gotLSE
				c.attentionRows(p, rows, true)
				if d, dl := countDiff(got, want), countDiff(gotLSE, wantLSE); d != 0 || dl != 0 {
					t.Errorf("kv %d %v threads %d: %d outputs and %d log-sum-exps differ from one-token calls", kv, kind, threads, d, dl)
				}
				p.Close()
			}
		}
	}
}

// TestAttentionRows checks attendRows in passes: a ForwardLayers step of single-row
// stages at three depths with Options.Exact gives each row bitwise what running its
// stage alone gives, with and without a prefix, for pools whose threads outnumber the
// KV heads and not, after a prompt long enough to split the keys.
func TestAttentionRows(t *testing.T) {
	for _, kv := range []int{1, 2} {
		spec := partialSpec
		spec.KVHeads, spec.Context = kv, 1024
		const period = 2
		m := sharedModel(t, spec, period)
		dim := m.Config.Dim
		for _, threads := range []int{1, 3} {
			for _, exact := range []bool{true} {
				for _, withPrefix := range []bool{false, true} {
					t.Run(fmt.Sprintf("kv=%d/threads=%d/exact=%v/prefix=%v", kv, threads, exact, withPrefix), func(t *testing.T) {
						p := kernels.NewPool(threads)
						defer p.Close()
						opt := &Options{Exact: exact}
						if withPrefix {
							pc, err := m.NewCache(300, CacheF32)
							if err != nil {
								t.Fatal(err)
							}
							if err := m.Forward(p, pc, randomTokens(300, m.Config.Vocab, 8), nil, nil); err != nil {
								t.Fatal(err)
							}
							opt.Prefix = newDensePrefix(t, pc)
						}
						prompt := randomTokens(600, m.Config.Vocab, 4)
						tokens := randomTokens(3, m.Config.Vocab, 5)
						setup := func() (*Cache, [][]float32) {
							c, err := m.NewCache(640, CacheF16)
							if err != nil {
								t.Fatal(err)
							}
							if err := m.Forward(p, c, prompt, nil, opt); err != nil {
								t.Fatal(err)
							}
							x := make([][]float32, 3)
							for i := range x {
								x[i] = make([]float32, dim)
								if err := m.Embed(x[i], tokens[i:i+1]); err != nil {
									t.Fatal(err)
								}
							}
							for _, r := range []struct{ row, depth int }{{0, 4}, {1, 2}} {
								if err := m.ForwardLayers(p, c, x[r.row], []Stage{{Layer: 0, Pos: len(prompt) + r.row, Rows: 1}}, r.depth, opt); err != nil {
									t.Fatal(err)
								}
							}
							return c, x
						}
						pos := len(prompt)
						stages := []Stage{{Layer: 4, Pos: pos, Rows: 1}, {Layer: 2, Pos: pos + 1, Rows: 1}, {Layer: 0, Pos: pos + 2, Rows: 1}}
						c, x := setup()
						for i, s := range stages {
							if err := m.ForwardLayers(p, c, x[i], []Stage{s}, period, opt); err != nil {
								t.Fatal(err)
							}
						}
						want := x
						c, x = setup()
						var batch []float32
						for i := range stages {
							batch = append(batch, x[i]...)
						}
						if err := m.ForwardLayers(p, c, batch, stages, period, opt); err != nil {
							t.Fatal(err)
						}
						for i := range stages {
							if d := countDiff(batch[i*dim:(i+1)*dim], want[i]); d != 0 {
								t.Errorf("stage %d: %d of %d values differ from running it alone", i, d, dim)
							}
						}
					})
				}
			}
		}
	}
}

// randomFloats returns n values uniform in [-1, 1).
func randomFloats(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 2))
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}
