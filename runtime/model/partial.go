package model

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

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
