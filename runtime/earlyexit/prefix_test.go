package earlyexit

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/speculate"
)

// densePrefix attends to every key of a context prefilled in its own cache (a
// model.Prefix, as a squeezed artifact's session is one), in float64.
type densePrefix struct {
	cfg        *model.Config
	n          int
	keys, vals [][]float32 // per layer*KVHeads+head: n x HeadDim
}

func newDensePrefix(t *testing.T, c *model.Cache) *densePrefix {
	t.Helper()
	cfg := &c.Model().Config
	p := &densePrefix{cfg: cfg, n: c.Len()}
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			k, err := c.Keys(l, h, 0, c.Len(), make([]float32, c.Len()*cfg.HeadDim))
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.Values(l, h, 0, c.Len(), make([]float32, c.Len()*cfg.HeadDim))
			if err != nil {
				t.Fatal(err)
			}
			p.keys, p.vals = append(p.keys, k), append(p.vals, v)
		}
	}
	return p
}

func (p *densePrefix) Len() int { return p.n }

func (p *densePrefix) Attend(layer int, q []float32, n int, out, lse []float32) {
	cfg := p.cfg
	hd, group := cfg.HeadDim, cfg.Heads/cfg.KVHeads
	sc := make([]float64, p.n)
	for i := range n {
		for h := range cfg.Heads {
			k, v := p.keys[layer*cfg.KVHeads+h/group], p.vals[layer*cfg.KVHeads+h/group]
			qv := q[(i*cfg.Heads+h)*hd:][:hd]
			m := math.Inf(-1)
			for j := range p.n {
				var s float64
				for d := range hd {
					s += float64(qv[d]) * float64(k[j*hd+d])
				}
				sc[j] = s
				m = max(m, s)
			}
			acc := make([]float64, hd)
			var sum float64
			for j := range p.n {
				w := math.Exp(sc[j] - m)
				sum += w
				for d := range hd {
					acc[d] += w * float64(v[j*hd+d])
				}
			}
			for d := range hd {
				out[(i*cfg.Heads+h)*hd+d] = float32(acc[d] / sum)
			}
			lse[i*cfg.Heads+h] = float32(m + math.Log(sum))
		}
	}
}

// TestPipelineWithPrefix checks the pipeline after a fixed context that the cache does
// not hold (positions shifted by the prefix, every layer attending to it), with and
// without drafts: the tokens are plain greedy decoding's with the same prefix.
func TestPipelineWithPrefix(t *testing.T) {
	s := modeltest.Spec{Layers: 6, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 64, Context: 512, Weights: gguf.TypeF16, Seed: 9}
	m, _ := sharedModel(t, s, 2)
	p := kernels.NewPool(2)
	defer p.Close()
	pc, err := m.NewCache(80, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(p, pc, randomTokens(80, s.Vocab, 3), nil, nil); err != nil {
		t.Fatal(err)
	}
	prefix := newDensePrefix(t, pc)
	prompt := randomTokens(12, s.Vocab, 4)
	want := plainGreedy(t, m, p, prefix, prompt, 40)
	for _, o := range []PipelineOptions{{}, {Vocab: prompt}, {Drafter: speculate.NewNGram(nil, 1, 3)}} {
		t.Run(fmt.Sprintf("vocab=%d/draft=%v", len(o.Vocab), o.Drafter != nil), func(t *testing.T) {
			got, _ := pipelined(t, m, p, prefix, prompt, 40, o)
			if !slices.Equal(got, want) {
				t.Fatalf("pipelined %v\nplain     %v", got, want)
			}
		})
	}
}
