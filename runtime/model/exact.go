package model

import (
	"math"

	"squeeze/runtime/kernels"
)

// attentionEach is the attention of a pass with Options.Exact: every token exactly as a
// pass of that token alone at its position computes it. The batch's keys and values
// are already stored. Attention to the cache runs in attentionExact (token i sees the
// keys of positions up to pos+i only, cut into the parts a one-token pass would use);
// the prefix (if any) is attended in a call per token, or in one AttendExact call for
// the batch if the prefix is an ExactPrefix. Only the query and output rows move; the
// workspace's buffers are restored afterwards.
func (c *Cache) attentionEach(p *kernels.Pool, layer, pos, n int, prefix Prefix) {
	ws := &c.ws
	cfg := &c.m.Config
	qDim, heads := cfg.QDim(), cfg.Heads
	c.attentionExact(p, layer, pos, n, prefix != nil)
	if prefix == nil {
		return
	}
	if batch, ok := prefix.(ExactPrefix); ok {
		batch.AttendExact(layer, ws.q[:n*qDim], n, ws.pre[:n*qDim], ws.preLSE[:n*heads])
		return
	}
	for i := range n {
		prefix.Attend(layer, ws.q[i*qDim:(i+1)*qDim], 1, ws.pre[i*qDim:(i+1)*qDim], ws.preLSE[i*heads:(i+1)*heads])
	}
}

// ExactPrefix is a Prefix that attends a batch of tokens giving each one bitwise the
// result Attend gives it alone. A Forward with Options.Exact calls AttendExact once per
// layer for the whole batch rather than Attend once per token, so that the prefix's
// keys and values can be read once for all the batch's tokens.
type ExactPrefix interface {
	Prefix
	// AttendExact is Attend for n tokens, each computed as Attend computes one token.
	AttendExact(layer int, q []float32, n int, out, lse []float32)
}

// exactWork is the scratch of attentionExact, kept in the workspace.
type exactWork struct {
	n, pos, span int // the call's tokens, first position and longest span (pos+n)
	layer        int
	wantLSE      bool
	split, chunk []int // per token: the parts of its span, and their length
	// scores4 holds, per key/value head, token and query head of the group, the 4-row
	// kernel's scores of the span's keys; probs, per token and key/value head, the
	// parts' softmaxes as the one-token pass lays them out for the value product (part
	// by part, each part's vectors one after the other), from probsAt[token].
	scores4, probs []float32
	probsAt        []int
	// lse and part are, per split token, the unit-major log-sum-exps and outputs of its
	// parts as mergeParts reads them.
	lse, part [][]float32
	tmp       [][]float32 // per worker: a product's output

	// The phase running: units and what each does; forFn hands them to the workers.
	units                     int
	unit                      func(w, u int)
	scores, probsFn, valuesFn func(w, u int)
	forFn                     func(lo, hi int)
}

// exactKeyBlock is the number of keys whose scores attentionExact computes together for
// every token (their keys stay in L1 while each token's queries pass by).
const exactKeyBlock = 128

// exactDimBlock is the number of value dimensions (rows of the transposed values) whose
// outputs attentionExact computes together for every token and part.
const exactDimBlock = 16

// attentionExact is n one-token attention calls (c.attention(p, layer, pos+i, 1,
// wantLSE) for each token i) that read the cache's keys and values once for all the
// tokens, with bitwise the same results. A one-token call cuts each key/value head's span
// into parts (attendWorker); within a part the group's query heads are scored by one
// matrix product, whose results depend on the part only through which rows it leaves
// to the product's last Rows%4 (the 1-row kernel; every other row goes through the
// 4-row kernel alike, whatever its neighbours). So the scores of every key by the 4-row
// kernel are computed once, a block of keys at a time for every token; each part takes
// its rows from them and recomputes its last rows through a product of its own. The
// softmax, the value product per part (blocks of value dimensions, each token's part
// reading them in turn, the same columns through the same kernel) and the merge of the
// parts then run as the one-token call runs them.
func (c *Cache) attentionExact(p *kernels.Pool, layer, pos, n int, wantLSE bool) {
	ws := &c.ws
	ew := &ws.exact
	cfg := &c.m.Config
	group := cfg.Heads / cfg.KVHeads
	threads := len(ws.workers)
	ew.n, ew.pos, ew.span, ew.wantLSE, ew.layer = n, pos, pos+n, wantLSE, layer
	ew.split, ew.chunk, ew.probsAt = resize(ew.split, n), resize(ew.chunk, n), resize(ew.probsAt, n)
	probs := 0
	for i := range n {
		span := pos + i + 1
		split := 1
		if units := cfg.KVHeads; units < threads { // as attention does for one token
			split = min((threads+units-1)/units, (span+minSplitSpan-1)/minSplitSpan)
		}
		ew.split[i], ew.chunk[i] = split, (span+split-1)/split
		ew.probsAt[i] = probs
		probs += cfg.KVHeads * group * span
	}
	ew.scores4 = resizeF(ew.scores4, cfg.KVHeads*n*group*ew.span)
	ew.probs = resizeF(ew.probs, probs)
	if len(ew.lse) < n {
		ew.lse, ew.part = make([][]float32, n), make([][]float32, n)
	}
	for i := range n {
		if ew.split[i] > 1 {
			need := cfg.KVHeads * ew.split[i] * ws.block * group
			ew.lse[i] = resizeF(ew.lse[i], need)
			ew.part[i] = resizeF(ew.part[i], need*cfg.HeadDim)
		}
	}
	if len(ew.tmp) != threads {
		ew.tmp = make([][]float32, threads)
	}
	for w := range ew.tmp {
		ew.tmp[w] = resizeF(ew.tmp[w], group*max(exactKeyBlock, exactDimBlock))
	}
	if ew.forFn == nil {
		ew.scores, ew.probsFn, ew.valuesFn = c.exactScores, c.exactProbs, c.exactValues
		ew.forFn = func(lo, hi int) {
			for w := lo; w < hi; w++ {
				for u := w; u < ew.units; u += len(ws.workers) {
					ew.unit(w, u)
				}
			}
		}
	}
	run := func(units int, fn func(w, u int)) {
		ew.units, ew.unit = units, fn
		p.For(threads, 1, ew.forFn)
	}
	if ew.span >= 4 {
		run(cfg.KVHeads*((ew.span+exactKeyBlock-1)/exactKeyBlock), ew.scores)
	}
	run(cfg.KVHeads*n, ew.probsFn)
	run(cfg.KVHeads*((cfg.HeadDim+exactDimBlock-1)/exactDimBlock), ew.valuesFn)

	// Merge the parts of split tokens as attention does, with the workspace pointing at
	// the token.
	qDim := cfg.QDim()
	att, attLSE, lse, part := ws.att, ws.attLSE, ws.lse, ws.part
	n0, pos0, split0, want0 := ws.n, ws.pos, ws.split, ws.wantLSE
	for i := range n {
		if ew.split[i] == 1 {
			continue
		}
		ws.n, ws.pos, ws.split, ws.wantLSE = 1, pos+i, ew.split[i], wantLSE
		ws.att, ws.lse, ws.part = att[i*qDim:(i+1)*qDim], ew.lse[i], ew.part[i]
		if wantLSE {
			ws.attLSE = attLSE[i*cfg.Heads : (i+1)*cfg.Heads]
		}
		c.mergeParts()
	}
	ws.att, ws.attLSE, ws.lse, ws.part = att, attLSE, lse, part
	ws.n, ws.pos, ws.split, ws.wantLSE = n0, pos0, split0, want0
}

// exactScores is unit u of attentionExact's first phase on worker w: key/value head
// g = u % KVHeads and block u / KVHeads of the keys, scored by the 4-row kernel for the
// group's query heads of every token, into scores4.
func (c *Cache) exactScores(w, u int) {
	cfg := &c.m.Config
	ew := &c.ws.exact
	g, b := u%cfg.KVHeads, u/cfg.KVHeads
	lo := b * exactKeyBlock
	hi := min(ew.span, lo+exactKeyBlock)
	// Rows [lo, hi-r) go through the 4-row kernel as they are; the last r rows of the
	// span (r = its length mod 4), with the three before them (span >= 4).
	r := (hi - lo) % 4
	c.exactScoreRows(w, g, lo, hi-r)
	if r != 0 {
		c.exactScoreRows(w, g, hi-4, hi)
	}
}

// exactScoreRows scores keys [lo, hi) of key/value head g (hi-lo a multiple of 4) for
// the group's query heads of every token that sees any of them, into scores4.
func (c *Cache) exactScoreRows(w, g, lo, hi int) {
	ws := &c.ws
	ew := &ws.exact
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	keys := hi - lo
	if keys <= 0 {
		return
	}
	base := c.offset(ew.layer, g, 0) * c.elem
	wk.keys.Rows, wk.keys.Cols, wk.keys.RowBytes = keys, hd, hd*c.elem
	wk.keys.Data = c.kb[base+lo*hd*c.elem : base+hi*hd*c.elem]
	tmp := ew.tmp[w][:group*keys]
	for i := range ew.n {
		if ew.pos+i+1 <= lo {
			continue // the token sees none of these keys
		}
		at := i*qDim + g*group*hd
		kernels.MatMul(wk.pool, tmp, &wk.keys, ws.q[at:at+group*hd], group)
		for v := range group {
			row := ew.scores4[((g*ew.n+i)*group+v)*ew.span:][:ew.span]
			copy(row[lo:hi], tmp[v*keys:(v+1)*keys])
		}
	}
}

// exactProbs is unit u of attentionExact's second phase on worker w: token i = u /
// KVHeads and key/value head g. Each part of the token's span gets its scores as the
// one-token pass computes them (scores4, then the part's last Rows%4 rows by a product of
// their own), their softmax, and its log-sum-exp where the one-token pass keeps it.
func (c *Cache) exactProbs(w, u int) {
	ws := &c.ws
	ew := &ws.exact
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	i, g := u/cfg.KVHeads, u%cfg.KVHeads
	span, split, chunk := ew.pos+i+1, ew.split[i], ew.chunk[i]
	probs := ew.probs[ew.probsAt[i]+g*group*span:][:group*span]
	stride := ws.block * group // vectors per unit in the split token's lse and part
	at := i*qDim + g*group*hd
	q := ws.q[at : at+group*hd]
	base := c.offset(ew.layer, g, 0) * c.elem
	for part := range split {
		lo, hi := min(span, part*chunk), min(span, (part+1)*chunk)
		keys := hi - lo
		unit := g*split + part
		if keys == 0 {
			for v := range group {
				ew.lse[i][unit*stride+v] = float32(math.Inf(-1))
			}
			continue
		}
		rows := probs[group*lo : group*hi] // the part's vectors, keys apart
		full := lo + (keys &^ 3)
		for v := range group {
			src := ew.scores4[((g*ew.n+i)*group+v)*ew.span:]
			copy(rows[v*keys:v*keys+full-lo], src[lo:full])
		}
		if tail := hi - full; tail > 0 {
			wk.keys.Rows, wk.keys.Cols, wk.keys.RowBytes = tail, hd, hd*c.elem
			wk.keys.Data = c.kb[base+full*hd*c.elem : base+hi*hd*c.elem]
			tmp := ew.tmp[w][:group*tail]
			kernels.MatMul(wk.pool, tmp, &wk.keys, q, group)
			for v := range group {
				copy(rows[v*keys+full-lo:(v+1)*keys], tmp[v*tail:(v+1)*tail])
			}
		}
		for v := range group {
			lse := kernels.Softmax(rows[v*keys : (v+1)*keys])
			if split > 1 {
				ew.lse[i][unit*stride+v] = lse
			} else if ew.wantLSE {
				ws.attLSE[i*cfg.Heads+g*group+v] = lse
			}
		}
	}
}

// exactValues is unit u of attentionExact's last phase on worker w: key/value head g =
// u % KVHeads and the block u / KVHeads of value dimensions, for every token and part:
// the part's probabilities times its values, through the product the one-token pass
// uses (rows of the block are the 4-row kernel's alike), into the attention output or,
// for a split token, its part's output.
func (c *Cache) exactValues(w, u int) {
	ws := &c.ws
	ew := &ws.exact
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	g, b := u%cfg.KVHeads, u/cfg.KVHeads
	// Blocks start at multiples of four: the last holds the hd%4 dimensions a one-token
	// pass gives to the 1-row kernel, and every other row is the 4-row kernel's alike.
	d0 := b * exactDimBlock
	d1 := min(hd, d0+exactDimBlock)
	dims := d1 - d0
	base := c.offset(ew.layer, g, 0) * c.elem
	stride := ws.block * group
	tmp := ew.tmp[w][:group*dims]
	for i := range ew.n {
		span, split, chunk := ew.pos+i+1, ew.split[i], ew.chunk[i]
		probs := ew.probs[ew.probsAt[i]+g*group*span:][:group*span]
		for part := range split {
			lo, hi := min(span, part*chunk), min(span, (part+1)*chunk)
			keys := hi - lo
			unit := g*split + part
			if keys == 0 {
				if split > 1 {
					for v := range group {
						clear(ew.part[i][(unit*stride+v)*hd+d0 : (unit*stride+v)*hd+d1])
					}
				}
				continue
			}
			wk.valuesT.Rows, wk.valuesT.Cols, wk.valuesT.RowBytes = dims, keys, c.cap*c.elem
			off := base + (d0*c.cap+lo)*c.elem
			wk.valuesT.Data = c.vb[off : off+dims*c.cap*c.elem]
			kernels.MatMul(wk.pool, tmp, &wk.valuesT, probs[group*lo:group*hi], group)
			for v := range group {
				var dst []float32
				if split > 1 {
					dst = ew.part[i][(unit*stride+v)*hd:]
				} else {
					dst = ws.att[i*qDim+(g*group+v)*hd:]
				}
				copy(dst[d0:d1], tmp[v*dims:(v+1)*dims])
			}
		}
	}
}

// resize returns s with length n, reallocated if its capacity is short.
func resize(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}

// resizeF is resize for float32s.
func resizeF(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
