package precompute

import (
	"fmt"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// queryProjection computes a layer's attention queries from the hidden state entering it,
// as the forward pass does: RMSNorm with attn_norm, the attn_q projection (plus its bias),
// then RoPE at each token's position. The model keeps its weights private, so they are
// read from the GGUF file it was loaded from.
type queryProjection struct {
	m    *model.Model
	norm [][]float32
	wq   []*kernels.Matrix
	bias [][]float32 // nil entries without biases
}

// newQueryProjection reads the query weights of every layer of m from f.
func newQueryProjection(m *model.Model, f *gguf.File) (*queryProjection, error) {
	return newProjection(m, f, "attn_q", m.Config.QDim())
}

// newProjection reads the weights of projection kind ("attn_q", or "attn_k" for tests),
// rows outputs wide, of every layer.
func newProjection(m *model.Model, f *gguf.File, kind string, rows int) (*queryProjection, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: no model file", ErrInvalid)
	}
	cfg := &m.Config
	p := &queryProjection{m: m}
	for l := range cfg.Layers {
		norm, err := vector(f, fmt.Sprintf("blk.%d.attn_norm.weight", l), cfg.Dim)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("blk.%d.%s.weight", l, kind)
		info, data, err := f.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("precompute: %w", err)
		}
		wq, err := kernels.NewMatrix(info.Type, rows, cfg.Dim, data)
		if err != nil {
			return nil, fmt.Errorf("precompute: %s: %w", name, err)
		}
		var bias []float32
		if cfg.QKVBias {
			if bias, err = vector(f, fmt.Sprintf("blk.%d.%s.bias", l, kind), rows); err != nil {
				return nil, err
			}
		}
		p.norm = append(p.norm, norm)
		p.wq = append(p.wq, wq)
		p.bias = append(p.bias, bias)
	}
	return p, nil
}

// vector reads a 1-D tensor of n elements as float32.
func vector(f *gguf.File, name string, n int) ([]float32, error) {
	info, data, err := f.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("precompute: %w", err)
	}
	if info.Elements() != uint64(n) {
		return nil, fmt.Errorf("precompute: %s has %d elements, want %d", name, info.Elements(), n)
	}
	v := make([]float32, n)
	if err := kernels.Dequantize(info.Type, v, data); err != nil {
		return nil, fmt.Errorf("precompute: %s: %w", name, err)
	}
	return v, nil
}

// queries returns the post-RoPE queries (t x QDim, or the projection's width) of layer l for the t hidden states
// x (t x Dim) of the tokens at positions pos, pos+1, ...
func (p *queryProjection) queries(pool *kernels.Pool, l int, x []float32, t, pos int) []float32 {
	cfg := &p.m.Config
	normed := make([]float32, t*cfg.Dim)
	for i := range t {
		kernels.RMSNorm(normed[i*cfg.Dim:(i+1)*cfg.Dim], x[i*cfg.Dim:(i+1)*cfg.Dim], p.norm[l], cfg.NormEps)
	}
	rows := p.wq[l].Rows
	q := make([]float32, t*rows)
	kernels.MatMul(pool, q, p.wq[l], normed, t)
	for i := range t {
		row := q[i*rows : (i+1)*rows]
		if p.bias[l] != nil {
			kernels.Add(row, p.bias[l])
		}
		p.m.Rotate(row, pos+i)
	}
	return q
}
