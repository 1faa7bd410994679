package model

import (
	"math"
	"sync/atomic"

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
	half                                []uint16  // the batch's values in half precision (CacheF16)
	state                               LayerState

	workers []*attnWorker // one per pool thread
	block   int           // query tokens per attention unit

	// The current attention call's arguments; attnFn is built once so that handing it
	// to the Pool allocates nothing.
	layer, pos, n int
	split         int       // parts each unit's key span is cut into
	lse           []float32 // split calls: log normalizer per unit and vector
	part          []float32 // split calls: output per unit and vector
	attnFn        func(lo, hi int)

	// Passes with a Prefix: the cache attention's log-sum-exp per token and head
	// (attLSE, kept when wantLSE), and the prefix's output and log-sum-exp.
	wantLSE             bool
	attLSE, pre, preLSE []float32

	// The tiled path (passes of at least tiledMinBatch tokens): every key/value head's
	// span packed for kernels.AttnScratch.Attend, the units' count and next unit, and
	// the pool functions.
	kv              []kernels.AttnKV
	tiledBlock      int // query tokens per unit
	tiledUnits      int
	tiledNext       atomic.Int64
	packFn, tiledFn func(lo, hi int)
}

// ensurePrefix sizes the buffers of a pass of n tokens with a Prefix.
func (ws *workspace) ensurePrefix(n int, cfg *Config) {
	if len(ws.attLSE) < n*cfg.Heads {
		ws.attLSE = make([]float32, n*cfg.Heads)
		ws.preLSE = make([]float32, n*cfg.Heads)
		ws.pre = make([]float32, n*cfg.QDim())
	}
}

// attnWorker is one thread's attention scratch. Its single-thread pool runs the matrix
// products of the units the worker owns.
type attnWorker struct {
	pool    *kernels.Pool
	q, out  []float32 // block x group query and output vectors, HeadDim each
	scores  []float32 // block x group rows of up to Cap() scores
	lse     []float32 // block x group log normalizers (attendKeys)
	keys    kernels.Matrix
	valuesT kernels.Matrix

	// The tiled path's scratch: the unit's query rows, outputs and log-sum-exps.
	tiled          kernels.AttnScratch
	tq, tout, tlse []float32
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
		ws.q = make([]float32, n*cfg.QDim())
		ws.att = make([]float32, n*cfg.QDim())
		ws.k = make([]float32, n*cfg.KVDim())
		ws.v = make([]float32, n*cfg.KVDim())
		ws.gate = make([]float32, n*cfg.FFN)
		ws.up = make([]float32, n*cfg.FFN)
		ws.cos = make([]float32, n*cfg.RopeDim/2)
		ws.sin = make([]float32, n*cfg.RopeDim/2)
		ws.half = make([]uint16, n*cfg.KVDim())
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
				lse:     make([]float32, vecs),
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
// tokens; each pool thread takes every threads-th unit. When there are fewer units than
// threads (decoding a few tokens), each unit's key span is also split into parts whose
// softmaxes are merged by their log-sum-exp afterwards. With wantLSE, the log-sum-exp of
// every token and head's scores goes to ws.attLSE (token-major).
func (c *Cache) attention(p *kernels.Pool, layer, pos, n int, wantLSE bool) {
	ws := &c.ws
	cfg := &c.m.Config
	ws.layer, ws.pos, ws.n, ws.wantLSE = layer, pos, n, wantLSE
	if n >= tiledMinBatch {
		c.attentionTiled(p)
		return
	}
	units := (n + ws.block - 1) / ws.block * cfg.KVHeads
	ws.split = 1
	if threads := len(ws.workers); units < threads {
		ws.split = min((threads+units-1)/units, (pos+n+minSplitSpan-1)/minSplitSpan)
	}
	if ws.split > 1 {
		group := cfg.Heads / cfg.KVHeads
		need := units * ws.split * ws.block * group // ws.block*group vectors per unit
		if len(ws.lse) < need {
			ws.lse = make([]float32, need)
			ws.part = make([]float32, need*cfg.HeadDim)
		}
	}
	p.For(len(ws.workers), 1, ws.attnFn)
	if ws.split > 1 {
		c.mergeParts()
	}
}

// minSplitSpan is the fewest keys worth a part of their own.
const minSplitSpan = 256

// tiledMinBatch is the smallest pass that takes the tiled path (attentionTiled). Smaller
// ones (decoding, verifying a few draft tokens) keep attendWorker's arithmetic, so that
// a pass of a few tokens gives bitwise the logits of as many single-token passes. Tests
// raise it to reach the untiled path with large passes.
var tiledMinBatch = 64

// tiledRows is the number of query vectors (tokens x query heads of a group) a unit of
// the tiled path gives kernels.AttnScratch.Attend: each packed key and value is read
// once per unit, and the units of a 512-token pass keep two threads busy.
const tiledRows = 96

// attentionTiled is attention for large passes, through kernels.AttnScratch.Attend: each
// key/value head's span of pos+n positions is packed once (in parallel over panels),
// then units of one key/value head and a block of query tokens (the group's query heads
// of every token as rows) are handed out to the pool's threads, the longest spans
// first.
func (c *Cache) attentionTiled(p *kernels.Pool) {
	ws := &c.ws
	cfg := &c.m.Config
	hd, group := cfg.HeadDim, cfg.Heads/cfg.KVHeads
	if len(ws.kv) != cfg.KVHeads {
		ws.kv = make([]kernels.AttnKV, cfg.KVHeads)
	}
	for g := range ws.kv {
		ws.kv[g].Reset(hd, ws.pos+ws.n)
	}
	ws.tiledBlock = max(1, tiledRows/group)
	ws.tiledUnits = (ws.n + ws.tiledBlock - 1) / ws.tiledBlock * cfg.KVHeads
	rows := ws.tiledBlock * group
	for _, wk := range ws.workers {
		if len(wk.tq) < rows*hd {
			wk.tq = make([]float32, rows*hd)
			wk.tout = make([]float32, rows*hd)
			wk.tlse = make([]float32, rows)
		}
	}
	if ws.packFn == nil {
		ws.packFn = func(lo, hi int) { c.packTiled(lo, hi) }
		ws.tiledFn = func(lo, hi int) {
			for w := lo; w < hi; w++ {
				for {
					u := int(ws.tiledNext.Add(1)) - 1
					if u >= ws.tiledUnits {
						break
					}
					c.attendTiled(w, u)
				}
			}
		}
	}
	p.For(cfg.KVHeads*ws.kv[0].Panels(), 1, ws.packFn)
	ws.tiledNext.Store(0)
	p.For(len(ws.workers), 1, ws.tiledFn)
}

// packTiled packs panels [lo, hi) of the current layer, counting every key/value head's
// panels one after the other.
func (c *Cache) packTiled(lo, hi int) {
	ws := &c.ws
	cfg := &c.m.Config
	hd := cfg.HeadDim
	panels := ws.kv[0].Panels()
	for u := lo; u < hi; {
		g, b := u/panels, u%panels
		e := min(hi, (g+1)*panels)
		base := c.offset(ws.layer, g, 0)
		src := kernels.KVHead{Stride: c.cap}
		if c.kind == CacheF32 {
			src.Keys32, src.Values32 = c.k32[base:base+c.cap*hd], c.v32[base:base+hd*c.cap]
		} else {
			src.Keys16, src.Values16 = c.k16[base:base+c.cap*hd], c.v16[base:base+hd*c.cap]
		}
		ws.kv[g].Pack(&src, b, b+e-u)
		u = e
	}
}

// attendTiled runs unit u of the tiled path on worker w: key/value head g = u%KVHeads
// and, longest spans first, the block of query tokens counted from the end.
func (c *Cache) attendTiled(w, u int) {
	ws := &c.ws
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	blocks := (ws.n + ws.tiledBlock - 1) / ws.tiledBlock
	b, g := blocks-1-u/cfg.KVHeads, u%cfg.KVHeads
	i0 := b * ws.tiledBlock
	i1 := min(ws.n, i0+ws.tiledBlock)
	rows, width := (i1-i0)*group, group*hd
	for i := i0; i < i1; i++ {
		at := i*qDim + g*width
		copy(wk.tq[(i-i0)*width:(i-i0+1)*width], ws.q[at:at+width])
	}
	var lse []float32
	if ws.wantLSE {
		lse = wk.tlse[:rows]
	}
	wk.tiled.Attend(&ws.kv[g], wk.tq[:rows*hd], rows, group, ws.pos+i0+1, wk.tout[:rows*hd], lse)
	for i := i0; i < i1; i++ {
		at := i*qDim + g*width
		copy(ws.att[at:at+width], wk.tout[(i-i0)*width:(i-i0+1)*width])
		if lse != nil {
			copy(ws.attLSE[i*cfg.Heads+g*group:i*cfg.Heads+(g+1)*group], lse[(i-i0)*group:(i-i0+1)*group])
		}
	}
}

// attendWorker runs worker w's share of the current attention call: units w,
// w+threads, ..., each a key/value head g, a block of query tokens [i0, i1) and a part
// [lo, hi) of the span L = pos+i1 of keys they see. With the group's query heads as
// vectors:
//
//	scores = K[lo:hi] q          (one matrix product)
//	p      = softmax(scores[lo:min(hi, pos+i+1)]), zero beyond (causal mask)
//	out    = V^T[:, lo:hi] p     (values are stored transposed)
//
// Without a split, [lo, hi) is the whole span and out goes to ws.att; otherwise out and
// the log of each softmax's normalizer go to ws.part and ws.lse for mergeParts.
func (c *Cache) attendWorker(w int) {
	ws := &c.ws
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	blocks := (ws.n + ws.block - 1) / ws.block
	for u := w; u < blocks*cfg.KVHeads*ws.split; u += len(ws.workers) {
		part, bg := u%ws.split, u/ws.split
		b, g := bg/cfg.KVHeads, bg%cfg.KVHeads
		i0 := b * ws.block
		i1 := min(ws.n, i0+ws.block)
		span := ws.pos + i1
		chunk := (span + ws.split - 1) / ws.split
		lo, hi := min(span, part*chunk), min(span, (part+1)*chunk)
		vecs := (i1 - i0) * group
		for i := i0; i < i1; i++ {
			at := i*qDim + g*group*hd
			copy(wk.q[(i-i0)*group*hd:(i-i0+1)*group*hd], ws.q[at:at+group*hd])
		}
		stride := ws.block * group // vectors reserved per unit in ws.part and ws.lse
		out, lse := wk.out[:vecs*hd], wk.lse[:vecs]
		if ws.split > 1 {
			out = ws.part[u*stride*hd : (u*stride+vecs)*hd]
			lse = ws.lse[u*stride : u*stride+vecs]
		}
		c.attendKeys(wk, ws.layer, g, ws.pos+i0, lo, hi, vecs, out, lse)
		if ws.split == 1 {
			for i := i0; i < i1; i++ {
				at := i*qDim + g*group*hd
				copy(ws.att[at:at+group*hd], out[(i-i0)*group*hd:(i-i0+1)*group*hd])
				if ws.wantLSE {
					at = i*cfg.Heads + g*group
					copy(ws.attLSE[at:at+group], lse[(i-i0)*group:(i-i0+1)*group])
				}
			}
		}
	}
}

// attendKeys computes the attention of the vecs query vectors in wk.q (a block of
// consecutive tokens' query heads of KV head g, group vectors per token, the first
// token at position first) to keys [lo, hi) of layer's cache, as attendWorker
// describes: the scores by one matrix product, each vector's softmax over the keys its
// token sees (positions up to its own; zero weight beyond), and the values' weighted sum
// into out. lse[v] gets the log of vector v's normalizer, −Inf where it sees no key.
func (c *Cache) attendKeys(wk *attnWorker, layer, g, first, lo, hi, vecs int, out, lse []float32) {
	cfg := &c.m.Config
	hd := cfg.HeadDim
	group := cfg.Heads / cfg.KVHeads
	keys := hi - lo
	if keys == 0 {
		clear(out)
		for v := range vecs {
			lse[v] = float32(math.Inf(-1))
		}
		return
	}
	base := c.offset(layer, g, 0) * c.elem
	wk.keys.Rows, wk.keys.Cols, wk.keys.RowBytes = keys, hd, hd*c.elem
	wk.keys.Data = c.kb[base+lo*hd*c.elem : base+hi*hd*c.elem]
	scores := wk.scores[:vecs*keys]
	// Both products go through DotRows8 (keys) and DotRowsPadded (values) where they
	// have a kernel (the choice depends on the cache's type, HeadDim and the CPU
	// alone, so every pass computes alike).
	if !kernels.DotRows8(scores, &wk.keys, wk.q, vecs) {
		kernels.MatMul(wk.pool, scores, &wk.keys, wk.q, vecs)
	}
	for v := range vecs {
		row := scores[v*keys : (v+1)*keys]
		keep := min(keys, max(0, first+v/group+1-lo))
		lse[v] = float32(math.Inf(-1))
		if keep > 0 {
			lse[v] = kernels.Softmax(row[:keep])
		}
		clear(row[keep:])
	}
	// V^T is HeadDim rows of Cap() positions; the product reads columns [lo, hi).
	wk.valuesT.Rows, wk.valuesT.Cols, wk.valuesT.RowBytes = hd, keys, c.cap*c.elem
	wk.valuesT.Data = c.vb[base+lo*c.elem : base+lo*c.elem+hd*c.cap*c.elem]
	if !kernels.DotRowsPadded(out, &wk.valuesT, scores, vecs) {
		kernels.MatMul(wk.pool, out, &wk.valuesT, scores, vecs)
	}
}

// mergeSplit sets dst to the merge of n parts of one vector's attention, part s at index
// at = base + s·stride of lse (its log normalizer) and of part (its output, len(dst)
// values from at·len(dst)): the average of the outputs weighted by each part's share
// exp(lse_s − lse_all) of the whole normalizer. It returns lse_all. Parts that saw no
// key (lse −Inf) count for nothing.
func mergeSplit(dst, part, lse []float32, base, stride, n int) float32 {
	hd := len(dst)
	m := float32(math.Inf(-1))
	for s := range n {
		m = max(m, lse[base+s*stride])
	}
	clear(dst)
	var total float32
	for s := range n {
		at := base + s*stride
		if math.IsInf(float64(lse[at]), -1) {
			continue
		}
		wgt := float32(math.Exp(float64(lse[at] - m)))
		total += wgt
		kernels.Axpy(wgt, part[at*hd:(at+1)*hd], dst)
	}
	kernels.Scale(dst, 1/total)
	return m + float32(math.Log(float64(total)))
}

// mergeParts combines the parts of a split attention call: each part's output is
// normalized over its own keys, so the whole is their average weighted by each part's
// share exp(lse_part - lse_all) of the softmax normalizer.
func (c *Cache) mergeParts() {
	ws := &c.ws
	cfg := &c.m.Config
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	stride := ws.block * group
	blocks := (ws.n + ws.block - 1) / ws.block
	for bg := range blocks * cfg.KVHeads {
		b, g := bg/cfg.KVHeads, bg%cfg.KVHeads
		i0 := b * ws.block
		vecs := (min(ws.n, i0+ws.block) - i0) * group
		first := bg * ws.split // the unit of part 0
		for v := range vecs {
			i, h := i0+v/group, g*group+v%group
			dst := ws.att[i*qDim+h*hd : i*qDim+(h+1)*hd]
			lse := mergeSplit(dst, ws.part, ws.lse, first*stride+v, stride, ws.split)
			if ws.wantLSE {
				ws.attLSE[i*cfg.Heads+h] = lse
			}
		}
	}
}
