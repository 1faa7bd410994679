package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// TestAttentionExact checks attentionExact against its reference, one one-token
// attention call per token, bitwise (outputs and log-sum-exps) on random keys, values
// and queries: head dimensions that are and are not multiples of 4, groups of 1 to 5
// query heads, f32 and f16 caches, pools that split the spans into parts or not, and
// spans from 1 key (the 1-row kernel only) across the split thresholds.
func TestAttentionExact(t *testing.T) {
	type shape struct{ heads, kvHeads, headDim int }
	shapes := []shape{{6, 2, 64}, {4, 4, 16}, {5, 1, 20}, {8, 2, 36}, {4, 1, 6}}
	threads := []int{1, 2, 5, 16}
	spans := []struct{ pos, n int }{{0, 1}, {0, 3}, {0, 7}, {2, 5}, {120, 9}, {250, 8}, {509, 6}, {1020, 9}}
	if testing.Short() {
		threads = []int{1, 5}
		spans = spans[:6]
	}
	r := rand.New(rand.NewPCG(7, 8))
	for si, sh := range shapes {
		m := loadSpec(t, modeltest.Spec{Layers: 2, Dim: sh.heads * 8, HeadDim: sh.headDim, Heads: sh.heads, KVHeads: sh.kvHeads,
			FFN: 32, Vocab: 64, Context: 2048, Seed: uint64(si + 1)})
		cfg := &m.Config
		for _, kind := range []CacheType{CacheF32, CacheF16} {
			for _, th := range threads {
				for _, sp := range spans {
					for _, wantLSE := range []bool{false, true} {
						name := fmt.Sprintf("h%d-kv%d-hd%d/%v/threads=%d/pos=%d/n=%d/lse=%v", sh.heads, sh.kvHeads, sh.headDim, kind, th, sp.pos, sp.n, wantLSE)
						t.Run(name, func(t *testing.T) {
							p := kernels.NewPool(th)
							defer p.Close()
							c, err := m.NewCache(sp.pos+sp.n+3, kind)
							if err != nil {
								t.Fatal(err)
							}
							ws := &c.ws
							ws.ensure(c, sp.pos+sp.n, p.Threads()) // store needs a column of every position
							ws.ensurePrefix(sp.n, cfg)
							const layer = 1
							rows := (sp.pos + sp.n) * cfg.KVDim()
							c.store(layer, 0, sp.pos+sp.n, randomF32(r, rows), randomF32(r, rows))
							copy(ws.q, randomF32(r, sp.n*cfg.QDim()))
							qDim, heads := cfg.QDim(), cfg.Heads

							c.attentionExact(p, layer, sp.pos, sp.n, wantLSE)
							got := slices.Clone(ws.att[:sp.n*qDim])
							gotLSE := slices.Clone(ws.attLSE[:sp.n*heads])

							q, att, attLSE := ws.q, ws.att, ws.attLSE
							clear(att)
							clear(attLSE)
							for i := range sp.n {
								ws.q, ws.att, ws.attLSE = q[i*qDim:(i+1)*qDim], att[i*qDim:(i+1)*qDim], attLSE[i*heads:(i+1)*heads]
								c.attention(p, layer, sp.pos+i, 1, wantLSE)
							}
							ws.q, ws.att, ws.attLSE = q, att, attLSE
							if d := countDiff(got, att[:sp.n*qDim]); d != 0 {
								t.Errorf("%d of %d outputs differ from one-token calls", d, sp.n*qDim)
							}
							if d := countDiff(gotLSE, attLSE[:sp.n*heads]); wantLSE && d != 0 {
								t.Errorf("%d of %d log-sum-exps differ from one-token calls", d, sp.n*heads)
							}
						})
					}
				}
			}
		}
	}
}

// randomF32 returns n standard normal values.
func randomF32(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}
