package model

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
)

// ErrStages means a ForwardLayers call's stages do not fit the model, the cache or each
// other.
var ErrStages = errors.New("model: bad stages")

// Stage is one run of a depth-mixed pass (ForwardLayers): Rows consecutive tokens at
// cache positions Pos.., whose hidden states enter layer Layer.
type Stage struct {
	Layer, Pos, Rows int
}

// Embed writes the token embeddings of tokens (len(tokens) x Dim) into dst: the hidden
// states that enter layer 0.
func (m *Model) Embed(dst []float32, tokens []int32) error {
	dim, vocab := m.Config.Dim, m.Config.Vocab
	if len(dst) < len(tokens)*dim {
		return fmt.Errorf("model: Embed of %d tokens into %d values", len(tokens), len(dst))
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= vocab {
			return fmt.Errorf("%w: token %d (at %d) with a vocabulary of %d", ErrToken, t, i, vocab)
		}
		m.embed.Row(dst[i*dim:(i+1)*dim], int(t))
	}
	return nil
}

// BlockPeriod returns the smallest p such that every layer i has the weights of layer
// i mod p, byte for byte (a parameter-shared decoder: p distinct blocks applied
// Layers/p times). It is Layers when no layer repeats another.
func (m *Model) BlockPeriod() int { return m.period }

// blockPeriod finds BlockPeriod's p by comparing the layers' weights.
func blockPeriod(layers []layer) int {
	for p := 1; p < len(layers); p++ {
		if len(layers)%p != 0 {
			continue
		}
		ok := true
		for i := p; i < len(layers) && ok; i++ {
			ok = sameLayer(&layers[i], &layers[i-p])
		}
		if ok {
			return p
		}
	}
	return len(layers)
}

// sameLayer reports whether two layers hold the same weights.
func sameLayer(a, b *layer) bool {
	vecs := [][2][]float32{{a.attnNorm, b.attnNorm}, {a.ffnNorm, b.ffnNorm}, {a.bq, b.bq}, {a.bk, b.bk}, {a.bv, b.bv}}
	for _, v := range vecs {
		if !slices.Equal(v[0], v[1]) {
			return false
		}
	}
	mats := [][2]*kernels.Matrix{{a.wq, b.wq}, {a.wk, b.wk}, {a.wv, b.wv}, {a.wo, b.wo}, {a.gate, b.gate}, {a.up, b.up}, {a.down, b.down}}
	for _, w := range mats {
		x, y := w[0], w[1]
		if x.Type != y.Type || x.Rows != y.Rows || x.Cols != y.Cols || !bytes.Equal(x.Data, y.Data) {
			return false
		}
	}
	return true
}

// ForwardLayers runs part of the model's depth for rows that may sit at different
// depths: the rows of stage s (their hidden states in x, stage after stage, Rows x Dim
// each) run layers s.Layer .. s.Layer+depth-1, and x receives the hidden states they
// leave with. Each row stores its keys and values in the layers it runs, at its
// position, and attends to the positions before it in those layers, which must have
// been filled (by Forward or earlier ForwardLayers calls); rows of one stage also attend
// to each other causally.
//
// All stages run through the same weights in one batch, so their layers must coincide
// modulo BlockPeriod: on a parameter-shared model, tokens at different depths share every
// weight read; otherwise all stages start at one layer. A pass from layer 0 takes the
// Embed of its tokens.
//
// ForwardLayers does not change Len(): the caller marks positions whose every layer is
// filled with Cache.SetLen. opt.Prefix, if set, is attended to as by Forward (positions
// are shifted by its Len()) and opt.Exact makes every row's result that of a pass of
// that row alone; Observe and AllLogits are ignored. The final norm and LM head
// are Head's. With one stage that starts at layer 0 and runs every layer, the result is
// bit for bit Forward's.
func (m *Model) ForwardLayers(p *kernels.Pool, c *Cache, x []float32, stages []Stage, depth int, opt *Options) error {
	if opt == nil {
		opt = &Options{}
	}
	if p == nil || c == nil {
		return errors.New("model: ForwardLayers needs a pool and a cache")
	}
	if c.m != m {
		return errors.New("model: the cache belongs to another model")
	}
	cfg := &m.Config
	if len(stages) == 0 {
		return fmt.Errorf("%w: no stages", ErrStages)
	}
	if depth < 1 {
		return fmt.Errorf("%w: depth %d", ErrStages, depth)
	}
	n := 0
	first := stages[0].Layer
	for i, s := range stages {
		switch {
		case s.Rows < 1:
			return fmt.Errorf("%w: stage %d has %d rows", ErrStages, i, s.Rows)
		case s.Layer < 0 || s.Layer+depth > cfg.Layers:
			return fmt.Errorf("%w: stage %d runs layers %d..%d of %d", ErrStages, i, s.Layer, s.Layer+depth-1, cfg.Layers)
		case (s.Layer-first)%m.period != 0:
			return fmt.Errorf("%w: stage %d starts at layer %d, stage 0 at %d, and the model repeats its blocks every %d layers", ErrStages, i, s.Layer, first, m.period)
		case s.Pos < 0 || s.Pos+s.Rows > c.cap:
			return fmt.Errorf("%w: stage %d: %d tokens at position %d need %d positions, the cache holds %d", ErrContextFull, i, s.Rows, s.Pos, s.Pos+s.Rows, c.cap)
		}
		n += s.Rows
	}
	if n > MaxBatch {
		return fmt.Errorf("%w: %d rows, at most %d", ErrStages, n, MaxBatch)
	}
	dim := cfg.Dim
	if len(x) < n*dim {
		return fmt.Errorf("model: x has %d values, %d rows need %d", len(x), n, n*dim)
	}
	ws := &c.ws
	ws.ensure(c, n, p.Threads())
	rotBase := 0
	if opt.Prefix != nil {
		ws.ensurePrefix(n, cfg)
		rotBase = opt.Prefix.Len()
	}
	half := cfg.RopeDim / 2
	var buf [8]span
	spans := buf[:0]
	row := 0
	for _, s := range stages {
		for i := range s.Rows {
			r := row + i
			m.angles(ws.cos[r*half:(r+1)*half], ws.sin[r*half:(r+1)*half], rotBase+s.Pos+i)
		}
		spans = append(spans, span{layer: s.Layer, pos: s.Pos, lo: row, hi: row + s.Rows})
		row += s.Rows
	}
	copy(ws.x[:n*dim], x)
	// Repeated blocks run from their first copy, whatever depth the stages are at, so
	// that a parameter-shared model's passes keep one copy of the weights in cache.
	base := first % m.period
	for j := range depth {
		for i := range spans {
			spans[i].layer = stages[i].Layer + j
		}
		m.block(p, c, &m.layers[(base+j)%m.period], spans, n, opt.Prefix, opt.Exact, false)
	}
	copy(x, ws.x[:n*dim])
	return nil
}

// SetLen marks positions [0, n) as filled in every layer, so that the next Forward
// continues at n. ForwardLayers fills layers without moving Len(); SetLen commits the
// positions it completed. Positions beyond the old Len() that were not written hold
// stale values: the caller vouches for them. n must be in [0, Cap()].
func (c *Cache) SetLen(n int) error {
	if n < 0 || n > c.cap {
		return fmt.Errorf("model: set the length of a cache of %d positions to %d", c.cap, n)
	}
	c.n = n
	return nil
}

// HeadExact is Head computed row by row as a one-token Forward computes its logits
// (kernels.MatMulExact): each row's logits are bitwise a single-token pass's, while the
// LM head is still read once for all n rows.
func (m *Model) HeadExact(p *kernels.Pool, hidden []float32, n int, logits []float32) {
	m.finalNorm(hidden, n)
	kernels.MatMulExact(p, logits, m.output, hidden, n)
}

// SubHead is the LM head restricted to a set of tokens: the final norm, then only those
// tokens' rows of the output matrix, copied out of it. Guesses that need no exact
// logits (a draft from an early exit) get the argmax over a likely vocabulary for a
// fraction of the head's reads.
type SubHead struct {
	m    *Model
	ids  []int32
	in   map[int32]bool
	data []byte
	w    kernels.Matrix
}

// SubHead returns the LM head restricted to ids (duplicates and out-of-range ids are
// dropped).
func (m *Model) SubHead(ids []int32) *SubHead {
	h := &SubHead{m: m, in: map[int32]bool{}}
	h.w = kernels.Matrix{Type: m.output.Type, Cols: m.output.Cols, RowBytes: m.output.RowBytes}
	h.Add(ids...)
	return h
}

// Add appends the rows of ids that the head does not have yet.
func (h *SubHead) Add(ids ...int32) {
	out := h.m.output
	for _, id := range ids {
		if id < 0 || int(id) >= out.Rows || h.in[id] {
			continue
		}
		h.in[id] = true
		h.ids = append(h.ids, id)
		h.data = append(h.data, out.Data[int(id)*out.RowBytes:(int(id)+1)*out.RowBytes]...)
	}
	h.w.Rows, h.w.Data = len(h.ids), h.data
}

// IDs returns the head's tokens in row order (read-only).
func (h *SubHead) IDs() []int32 { return h.ids }

// Logits normalizes the n hidden states (n x Dim, in place) with the final norm and
// writes n x len(IDs()) logits, row i's for token IDs()[i].
func (h *SubHead) Logits(p *kernels.Pool, hidden []float32, n int, logits []float32) {
	h.m.finalNorm(hidden, n)
	kernels.MatMul(p, logits, &h.w, hidden, n)
}

// GreedyHead finds the greedy tokens of hidden states: for each, the first index of the
// largest of the logits HeadExact computes, bitwise the token argmax of HeadExact's row
// gives, while reading an 8-bit copy of the LM head and the exact rows of only the few
// tokens that copy cannot rule out. Each row i of the head is stored as int8 values q_i
// with a scale s_i (w_i ≈ s_i q_i) and the hidden state h as bytes (h ≈ t r), so that
// s_i t (q_i · r) estimates logit i within a bound that follows from the rounding of
// both (|w_ij − s_i q_ij|, |h_j − t r_j|) and of the exact logit's float arithmetic.
// Every token whose estimate plus its bound falls below the best estimate minus its
// bound has an exact logit below the best token's, so the exact logits of the rest
// (usually one to a few tokens) decide. A GreedyHead serves one caller at a time; the
// 8-bit copy is built once per Model and shared.
type GreedyHead struct {
	m     *Model
	t     *greedyTables
	q     kernels.I8Matrix
	xq    []uint8
	dots  []int32
	quant []greedyQuant
	n     int // the current call's hidden states
	// The current call's shares of the rows (one per pool thread that took one, in
	// slot order): their byte products and estimates are computed where the share
	// runs (scan).
	parts  []greedyPart
	slot   atomic.Int32
	scanFn func(lo, hi int)
	cand   []int
	vals   []float32
	exact  []float32 // the whole head's logits, where the bounds do not decide
}

// greedyPart is what one share of the rows found for each hidden state v: the row of
// the best estimate so far and that estimate, and every row within reach of it (the
// possible candidates).
type greedyPart struct {
	best  []int
	est   []float64
	lists [][]int
}

// greedyTables is GreedyHead's read-only data, built once per Model.
type greedyTables struct {
	once   sync.Once
	ok     bool
	q      []int8
	errMax []float64 // max_j |w_ij − s_i q_ij|
	abs1   []float64 // sum_j |s_i q_ij|
	// s_i and 128·s_i·sum_j q_ij as float64: the estimate s_i·(q_i·r) is, exactly but
	// for one rounding, s64_i·(q_i·(r+128)) − off_i (both products are exact in
	// float64).
	s64, off []float64
	// The largest errMax and abs1, which bound every row's bound.
	errTop, absTop float64
}

// greedyMaxCandidates is the most tokens whose exact logits GreedyHead computes one by
// one; beyond, it computes the whole head.
const greedyMaxCandidates = 64

// GreedyHead returns a GreedyHead on m, or nil when its LM head is not a plain float
// matrix (F32, F16, BF16) or the CPU has no fast int8 dot products
// (kernels.FastI8Dots), where HeadExact is the faster way to the greedy tokens.
func (m *Model) GreedyHead() *GreedyHead {
	t := &m.greedy
	t.once.Do(func() { t.build(m.output) })
	if !t.ok {
		return nil
	}
	cfg := &m.Config
	g := &GreedyHead{m: m, t: t, q: kernels.I8Matrix{Data: t.q, Rows: cfg.Vocab, Cols: cfg.Dim}}
	g.scanFn = g.scan
	return g
}

// build fills the tables from the head w, or leaves ok false.
func (t *greedyTables) build(w *kernels.Matrix) {
	switch w.Type {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
	default:
		return
	}
	if !kernels.FastI8Dots() || w.Cols > kernels.MaxI8Cols || w.Cols == 0 {
		return
	}
	rows, cols := w.Rows, w.Cols
	t.q = make([]int8, rows*cols)
	t.errMax, t.abs1 = make([]float64, rows), make([]float64, rows)
	t.s64, t.off = make([]float64, rows), make([]float64, rows)
	row := make([]float32, cols)
	for i := range rows {
		w.Row(row, i)
		var top float64
		for _, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return
			}
			top = max(top, math.Abs(float64(v)))
		}
		s := float32(top / 127)
		q := t.q[i*cols : (i+1)*cols]
		var sum int32
		var errMax, abs1 float64
		for j, v := range row {
			var r float64
			if s > 0 {
				r = max(-127, min(127, math.RoundToEven(float64(v)/float64(s))))
			}
			q[j] = int8(r)
			sum += int32(r)
			wq := float64(s) * r // exact: a float32 times an integer of 8 bits
			errMax = max(errMax, math.Abs(float64(v)-wq))
			abs1 += math.Abs(wq)
		}
		t.errMax[i], t.abs1[i] = errMax, abs1
		t.s64[i], t.off[i] = float64(s), float64(s)*128*float64(sum)
		t.errTop, t.absTop = max(t.errTop, errMax), max(t.absTop, abs1)
	}
	t.ok = true
}

// Argmax normalizes the n hidden states (n x Dim, in place) with the final norm, as
// HeadExact does, and writes to out[v] the index of the first largest of the logits
// HeadExact would compute for hidden state v on the pool p, or −1 when every one of
// them is NaN or −Inf.
func (g *GreedyHead) Argmax(p *kernels.Pool, hidden []float32, n int, out []int32) {
	m := g.m
	dim, vocab := m.Config.Dim, m.Config.Vocab
	m.finalNorm(hidden, n)
	if len(g.xq) < n*dim {
		g.xq, g.dots = make([]uint8, n*dim), make([]int32, n*vocab)
	}
	if len(g.quant) < n {
		g.quant = make([]greedyQuant, n)
	}
	// Each hidden state as bytes: r_j = round(h_j / scale) + 128.
	for v := range n {
		g.quant[v] = g.quantize(hidden[v*dim:(v+1)*dim], g.xq[v*dim:(v+1)*dim])
	}
	for len(g.parts) < p.Threads() {
		g.parts = append(g.parts, greedyPart{})
	}
	for k := range g.parts {
		pt := &g.parts[k]
		for len(pt.best) < n {
			pt.best, pt.est, pt.lists = append(pt.best, 0), append(pt.est, 0), append(pt.lists, nil)
		}
	}
	g.n = n
	g.slot.Store(0)
	p.For(vocab, 64, g.scanFn)
	for v, hq := range g.quant[:n] {
		h := hidden[v*dim : (v+1)*dim]
		if !hq.ok {
			out[v] = g.whole(p, h)
			continue
		}
		out[v] = g.pick(p, h, v)
	}
}

// scan computes the byte products of rows [lo, hi) for every hidden state of the call
// and, for each, keeps in its share of g.parts the rows whose estimates
// E_i = s_i·(q_i·r) (in units of the state's scale) come within the state's reach of
// the best so far: the best only grows, so a row left out is below the final best by
// more than any two bounds.
func (g *GreedyHead) scan(lo, hi int) {
	pt := &g.parts[g.slot.Add(1)-1]
	g.q.DotsRange(g.dots, g.xq, g.n, lo, hi)
	t, vocab := g.t, g.m.Config.Vocab
	for v, hq := range g.quant[:g.n] {
		if !hq.ok {
			continue
		}
		best, bestEst := lo, math.Inf(-1)
		list := pt.lists[v][:0]
		for k, d := range g.dots[v*vocab+lo : v*vocab+hi] {
			i := lo + k
			e := t.s64[i]*float64(d) - t.off[i]
			if e < bestEst-hq.reach {
				continue
			}
			if e > bestEst {
				best, bestEst = i, e
			}
			list = append(list, i)
		}
		pt.best[v], pt.est[v], pt.lists[v] = best, bestEst, list
	}
}

// greedyQuant describes a hidden state h quantized to bytes (r_j + 128, r_j =
// round(h_j/scale)): scale = max|h|/127, h1 = sum_j |h_j|, ex = max_j |h_j − scale·r_j|
// and amax = max_j |h_j|; ok is false when h is zero or not finite, where the bounds do
// not apply.
type greedyQuant struct {
	scale, h1, ex, amax float64
	// A row's bound is (errMax_i·wErr + abs1_i·aErr)·greedySlack; reach is twice the
	// largest, in units of scale.
	wErr, aErr, reach float64
	ok                bool
}

// quantize writes h as bytes into xq and describes the quantization.
func (g *GreedyHead) quantize(h []float32, xq []uint8) greedyQuant {
	var top, sum float64
	for _, x := range h {
		a := math.Abs(float64(x))
		top = max(top, a)
		sum += a
	}
	if !(top > 0) || math.IsInf(sum, 0) || math.IsNaN(sum) {
		return greedyQuant{}
	}
	s := top / 127
	var e float64
	for j, x := range h {
		r := max(-127, min(127, math.RoundToEven(float64(x)/s)))
		xq[j] = uint8(int(r) + 128)
		e = max(e, math.Abs(float64(x)-r*s))
	}
	// The exact logit's float arithmetic (the kernels' sums of at most Dim products,
	// in chains and reduction trees well under Dim+64 roundings deep) adds at most
	// gamma·sum_j |w_ij h_j| <= gamma·(abs1_i·amax + errMax_i·h1) to
	// |logit_i − s_i·scale·(q_i·r)| <= errMax_i·h1 + abs1_i·ex.
	gamma := float64(len(h)+64) * 0x1p-24
	hq := greedyQuant{scale: s, h1: sum, ex: e, amax: top, ok: true, wErr: sum * (1 + gamma), aErr: e + gamma*top}
	hq.reach = 2 * (g.t.errTop*hq.wErr + g.t.absTop*hq.aErr) * greedySlack / s
	return hq
}

// greedySlack covers the float64 rounding of the estimates and bounds.
const greedySlack = 1 + 1e-9

// pick returns the greedy token of the normalized hidden state h, hidden state v of the
// call, from what scan kept of it.
func (g *GreedyHead) pick(p *kernels.Pool, h []float32, v int) int32 {
	t, hq := g.t, g.quant[v]
	vocab := g.m.Config.Vocab
	dots := g.dots[v*vocab : (v+1)*vocab]
	bound := func(i int) float64 { return (t.errMax[i]*hq.wErr + t.abs1[i]*hq.aErr) * greedySlack }
	parts := g.parts[:g.slot.Load()]
	best, bestEst := -1, math.Inf(-1)
	for k := range parts {
		if parts[k].est[v] > bestEst {
			best, bestEst = parts[k].best[v], parts[k].est[v]
		}
	}
	if best < 0 {
		return g.whole(p, h)
	}
	lower := bestEst*hq.scale - bound(best)
	cand := g.cand[:0]
	for k := range parts {
		for _, i := range parts[k].lists[v] {
			e := (t.s64[i]*float64(dots[i]) - t.off[i]) * hq.scale
			if e+bound(i) >= lower {
				if cand = append(cand, i); len(cand) > greedyMaxCandidates {
					g.cand = cand
					return g.whole(p, h)
				}
			}
		}
	}
	g.cand = cand
	slices.Sort(cand) // the first of equal logits wins
	if len(g.vals) < len(cand) {
		g.vals = make([]float32, greedyMaxCandidates+1)
	}
	vals := g.vals[:len(cand)]
	kernels.MatVecRows(p, vals, g.m.output, h, cand)
	tok, bestV := int32(-1), float32(math.Inf(-1))
	for k, x := range vals {
		if math.IsNaN(float64(x)) {
			return g.whole(p, h)
		}
		if x > bestV {
			tok, bestV = int32(cand[k]), x
		}
	}
	if tok < 0 {
		return g.whole(p, h)
	}
	return tok
}

// whole computes every logit of the normalized hidden state h and returns the first
// largest's index (−1 if none exceeds −Inf): the fallback where the bounds do not
// decide.
func (g *GreedyHead) whole(p *kernels.Pool, h []float32) int32 {
	vocab := g.m.Config.Vocab
	if len(g.exact) < vocab {
		g.exact = make([]float32, vocab)
	}
	kernels.MatVec(p, g.exact[:vocab], g.m.output, h)
	best, bestV := int32(-1), float32(math.Inf(-1))
	for i, v := range g.exact[:vocab] {
		if v > bestV {
			best, bestV = int32(i), v
		}
	}
	return best
}
