package model

import (
	"squeeze/runtime/kernels"
)

// workspace is a Cache's scratch memory for forward passes, grown on demand and then
// reused, so decoding a token allocates nothing.
type workspace struct {
	batch   int // tokens the activation buffers hold
	threads int // workers the attention scratch serves

	x, xb, q, k, v, att, proj, gate, up []float32
	input, kPre                         []float32 // copies kept for Options.Observe
	cos, sin                            []float32 // RoPE angles, batch x RopeDim/2
	state                               LayerState

	scores [][]float32 // per attention worker, Cap() long
	kf, vf []float32   // a CacheF16 layer's keys and values as float32, KVHeads x Cap() x HeadDim

	// The attention workers' arguments; the funcs are built once so that handing them
	// to the Pool allocates nothing.
	layer, pos, n int
	attnFn        func(lo, hi int)
	convFn        func(lo, hi int)
}

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
	}
	if threads != ws.threads {
		ws.threads = threads
		ws.scores = make([][]float32, threads)
		for i := range ws.scores {
			ws.scores[i] = make([]float32, c.cap)
		}
	}
	if c.kind == CacheF16 && ws.kf == nil {
		ws.kf = make([]float32, cfg.KVHeads*c.cap*cfg.HeadDim)
		ws.vf = make([]float32, cfg.KVHeads*c.cap*cfg.HeadDim)
	}
	if ws.attnFn == nil {
		ws.attnFn = func(lo, hi int) {
			for w := lo; w < hi; w++ {
				c.attendWorker(w)
			}
		}
		ws.convFn = func(lo, hi int) {
			for i := lo; i < hi; i++ {
				c.convertSpan(i)
			}
		}
	}
}

// attention computes, for the n tokens at positions pos.. of layer, every query head's
// attention over the cache (whose keys and values for these tokens are already stored)
// into ws.att. Work is spread over the pool's threads, one worker per thread.
func (c *Cache) attention(p *kernels.Pool, layer, pos, n int) {
	ws := &c.ws
	ws.layer, ws.pos, ws.n = layer, pos, n
	if c.kind == CacheF16 {
		p.For(2*c.m.Config.KVHeads, 1, ws.convFn)
	}
	p.For(ws.threads, 1, ws.attnFn)
}

// convertSpan converts to float32 the keys (i even) or values (i odd) of key/value head
// i/2 of the current layer, for every position the current pass attends to.
func (c *Cache) convertSpan(i int) {
	ws := &c.ws
	hd := c.m.Config.HeadDim
	head := i / 2
	span := (ws.pos + ws.n) * hd
	src := c.offset(ws.layer, head, 0)
	dst := head * c.cap * hd
	if i%2 == 0 {
		f16ToF32(ws.kf[dst:dst+span], c.k16[src:src+span])
	} else {
		f16ToF32(ws.vf[dst:dst+span], c.v16[src:src+span])
	}
}

// attendWorker runs worker w's share of the (token, query head) pairs of the current pass:
// pairs w, w+threads, w+2*threads, ..., which balances the causal triangle's uneven rows.
func (c *Cache) attendWorker(w int) {
	ws := &c.ws
	cfg := &c.m.Config
	hd, qDim, heads := cfg.HeadDim, cfg.QDim(), cfg.Heads
	group := cfg.Heads / cfg.KVHeads
	scores := ws.scores[w]
	for it := w; it < ws.n*heads; it += ws.threads {
		i, h := it/heads, it%heads
		g := h / group
		span := ws.pos + i + 1
		var keys, vals []float32
		if c.kind == CacheF32 {
			at := c.offset(ws.layer, g, 0)
			keys, vals = c.k32[at:at+span*hd], c.v32[at:at+span*hd]
		} else {
			at := g * c.cap * hd
			keys, vals = ws.kf[at:at+span*hd], ws.vf[at:at+span*hd]
		}
		q := ws.q[i*qDim+h*hd : i*qDim+(h+1)*hd]
		s := scores[:span]
		for j := range s {
			s[j] = kernels.Dot(q, keys[j*hd:(j+1)*hd])
		}
		kernels.Softmax(s)
		out := ws.att[i*qDim+h*hd : i*qDim+(h+1)*hd]
		clear(out)
		for j, pj := range s {
			kernels.Axpy(pj, vals[j*hd:(j+1)*hd], out)
		}
	}
}
