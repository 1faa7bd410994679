package modeltest

import (
	"math"
	"testing"
)

// Cache is what DensePrefix reads a prefilled context from: a model.Cache (modeltest
// cannot import package model, whose tests import modeltest).
type Cache interface {
	Len() int
	Keys(layer, head, from, to int, dst []float32) ([]float32, error)
	Values(layer, head, from, to int, dst []float32) ([]float32, error)
}

// DensePrefix is a model.Prefix that attends to every key of a context prefilled in its
// own cache, in float64: the reference for prefixes that read fewer keys or none twice.
type DensePrefix struct {
	heads, kvHeads, headDim int
	n                       int
	keys, vals              [][]float32 // per layer*kvHeads+head: n x headDim
}

// NewDensePrefix copies the keys and values of c, whose model has the given numbers of
// layers, query and key/value heads and head dimension (its Config's).
func NewDensePrefix(tb testing.TB, c Cache, layers, heads, kvHeads, headDim int) *DensePrefix {
	tb.Helper()
	p := &DensePrefix{heads: heads, kvHeads: kvHeads, headDim: headDim, n: c.Len()}
	for l := range layers {
		for h := range kvHeads {
			k, err := c.Keys(l, h, 0, p.n, make([]float32, p.n*headDim))
			if err != nil {
				tb.Fatal(err)
			}
			v, err := c.Values(l, h, 0, p.n, make([]float32, p.n*headDim))
			if err != nil {
				tb.Fatal(err)
			}
			p.keys, p.vals = append(p.keys, k), append(p.vals, v)
		}
	}
	return p
}

// Len is the number of context positions.
func (p *DensePrefix) Len() int { return p.n }

// Attend computes n tokens' attention to the whole context in layer, as model.Prefix
// specifies (an empty context gives −Inf log-sum-exps).
func (p *DensePrefix) Attend(layer int, q []float32, n int, out, lse []float32) {
	hd, group := p.headDim, p.heads/p.kvHeads
	sc := make([]float64, p.n)
	acc := make([]float64, hd)
	for i := range n {
		for h := range p.heads {
			k, v := p.keys[layer*p.kvHeads+h/group], p.vals[layer*p.kvHeads+h/group]
			qv := q[(i*p.heads+h)*hd:][:hd]
			m := math.Inf(-1)
			for j := range p.n {
				var s float64
				for d := range hd {
					s += float64(qv[d]) * float64(k[j*hd+d])
				}
				sc[j] = s
				m = max(m, s)
			}
			if p.n == 0 {
				clear(out[(i*p.heads+h)*hd:][:hd])
				lse[i*p.heads+h] = float32(m)
				continue
			}
			clear(acc)
			var sum float64
			for j := range p.n {
				w := math.Exp(sc[j] - m)
				sum += w
				for d := range hd {
					acc[d] += w * float64(v[j*hd+d])
				}
			}
			for d := range hd {
				out[(i*p.heads+h)*hd+d] = float32(acc[d] / sum)
			}
			lse[i*p.heads+h] = float32(m + math.Log(sum))
		}
	}
}
