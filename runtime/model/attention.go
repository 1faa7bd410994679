package model

import (
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
)

// workspace is a Cache's scratch memory for forward passes, grown on demand and then
// reused, so decoding a token allocates nothing.
type workspace struct {
	batch int // tokens the activation buffers hold

	x, xb, q, k, v, att, proj, gate, up []float32
	input, kPre                         []float32 // copies kept for Options.Observe
	cos, sin                            []float32 // RoPE angles, batch x RopeDim/2
	col                                 []float32 // one value dimension of the batch
	state                               LayerState

	workers []*attnWorker // one per pool thread
	block   int           // query tokens per attention unit

	// The current attention call's arguments; attnFn is built once so that handing it
	// to the Pool allocates nothing.
	layer, pos, n int
	attnFn        func(lo, hi int)
}

// attnWorker is one thread's attention scratch. Its single-thread pool runs the matrix
// products of the units the worker owns.
type attnWorker struct {
	pool    *kernels.Pool
	q, out  []float32 // block x group query and output vectors, HeadDim each
	scores  []float32 // block x group rows of up to Cap() scores
	keys    kernels.Matrix
	valuesT kernels.Matrix
}

// attnScoreBudget bounds a worker's score buffer (float32s): the query block shrinks for
// long caches.
const attnScoreBudget = 1 << 20

// ensure sizes the workspace for passes of n tokens on a pool of threads workers.
func (ws *workspace) ensure(c *Cache, n, threads int) {
	cfg := &c.m.Config
	if n > ws.batch {
		ws.batch = n
		ws.x = make([]float32, n*cfg.Dim)
		ws.xb = make([]float32, n*cfg.Dim)
		ws.proj = make([]float32, n*cfg.Dim)
		ws.input = make([]float32, n*cfg.Dim)
		ws.q = make([]float32, n*cfg.QDim())
		ws.att = make([]float32, n*cfg.QDim())
		ws.k = make([]float32, n*cfg.KVDim())
		ws.v = make([]float32, n*cfg.KVDim())
		ws.kPre = make([]float32, n*cfg.KVDim())
		ws.gate = make([]float32, n*cfg.FFN)
		ws.up = make([]float32, n*cfg.FFN)
		ws.cos = make([]float32, n*cfg.RopeDim/2)
		ws.sin = make([]float32, n*cfg.RopeDim/2)
		ws.col = make([]float32, n)
	}
	if threads != len(ws.workers) {
		group := cfg.Heads / cfg.KVHeads
		ws.block = max(1, min(32, attnScoreBudget/(group*c.cap)))
		ws.workers = make([]*attnWorker, threads)
		typ := gguf.TypeF32
		if c.kind == CacheF16 {
			typ = gguf.TypeF16
		}
		for i := range ws.workers {
			vecs := ws.block * group
			ws.workers[i] = &attnWorker{
				pool:    kernels.NewPool(1),
				q:       make([]float32, vecs*cfg.HeadDim),
				out:     make([]float32, vecs*cfg.HeadDim),
				scores:  make([]float32, vecs*c.cap),
				keys:    kernels.Matrix{Type: typ},
				valuesT: kernels.Matrix{Type: typ},
			}
		}
	}
	if ws.attnFn == nil {
		ws.attnFn = func(lo, hi int) {
			for w := lo; w < hi; w++ {
				c.attendWorker(w)
			}
		}
	}
}

// attention computes, for the n tokens at positions pos.. of layer, every query head's
// attention over the cache (whose keys and values for these tokens are already stored)
// into ws.att. The work is cut into units of one key/value head and a block of query
// tokens; each pool thread takes every threads-th unit.
func (c *Cache) attention(p *kernels.Pool, layer, pos, n int) {
	ws := &c.ws
	ws.layer, ws.pos, ws.n = layer, pos, n
	p.For(len(ws.workers), 1, ws.attnFn)
}

// attendWorker runs worker w's share of the current attention call. For a unit of key/
// value head g and query tokens [i0, i1), with the group's query heads as vectors:
//
//	scores = K[0:L] q        (one matrix product over the span L = pos+i1)
//	p      = softmax(scores[0:pos+i+1]), zero beyond (causal mask)
//	out    = V^T[:, 0:L] p   (values are stored transposed)
func (c *Cache) attendWorker(w int) {
	ws := &c.ws
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	blocks := (ws.n + ws.block - 1) / ws.block
	for u := w; u < blocks*cfg.KVHeads; u += len(ws.workers) {
		b, g := u/cfg.KVHeads, u%cfg.KVHeads
		i0 := b * ws.block
		i1 := min(ws.n, i0+ws.block)
		span := ws.pos + i1
		vecs := (i1 - i0) * group
		for i := i0; i < i1; i++ {
			at := i*qDim + g*group*hd
			copy(wk.q[(i-i0)*group*hd:(i-i0+1)*group*hd], ws.q[at:at+group*hd])
		}
		base := c.offset(ws.layer, g, 0) * c.elem
		wk.keys.Rows, wk.keys.Cols, wk.keys.RowBytes = span, hd, hd*c.elem
		wk.keys.Data = c.kb[base : base+span*hd*c.elem]
		scores := wk.scores[:vecs*span]
		kernels.MatMul(wk.pool, scores, &wk.keys, wk.q, vecs)
		for v := range vecs {
			row := scores[v*span : (v+1)*span]
			keep := ws.pos + i0 + v/group + 1
			kernels.Softmax(row[:keep])
			clear(row[keep:])
		}
		// V^T is HeadDim rows of Cap() positions; the product reads the first span.
		wk.valuesT.Rows, wk.valuesT.Cols, wk.valuesT.RowBytes = hd, span, c.cap*c.elem
		wk.valuesT.Data = c.vb[base : base+hd*c.cap*c.elem]
		kernels.MatMul(wk.pool, wk.out[:vecs*hd], &wk.valuesT, scores, vecs)
		for i := i0; i < i1; i++ {
			at := i*qDim + g*group*hd
			copy(ws.att[at:at+group*hd], wk.out[(i-i0)*group*hd:(i-i0+1)*group*hd])
		}
	}
}
