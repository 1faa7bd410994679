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
						mixedDepthStep(t, m, p, opt, CacheF16, 640, prompt, tokens, period)
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
