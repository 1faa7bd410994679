package model

import (
	"errors"
	"fmt"
	"math"

	"squeeze/runtime/kernels"
)

// ErrToken means a token id is outside the model's vocabulary.
var ErrToken = errors.New("model: token id out of range")

// MaxBatch is the most tokens one pass through the layers processes. Forward splits
// longer inputs into consecutive passes of at most MaxBatch tokens, which bounds its
// scratch memory; the results are the same as one pass.
const MaxBatch = 512

// Options are a Forward call's optional behaviours. The zero value (or a nil *Options)
// computes the logits of the last token only.
type Options struct {
	// AllLogits asks for the logits of every token of the call, not just the last:
	// logits must then hold len(tokens) x Vocab values, token-major.
	AllLogits bool
	// Observe, if set, is called at the end of every layer of every pass with that
	// layer's intermediate values for the pass's tokens. The slices point into the
	// pass's working memory: valid only during the call and not to be modified (copy
	// what you keep, for example before handing a Hidden to Head).
	Observe func(s *LayerState)
	// Prefix, if set, is a fixed context before the cache's tokens: they take positions
	// Prefix.Len()+cache position, and every layer's attention also attends to the
	// prefix (see Prefix).
	Prefix Prefix
	// Exact computes every token of the call bitwise as a call of that token alone
	// would (on the same Pool, cache and Prefix): the logits and the cached keys and
	// values of n tokens equal those of n one-token calls. Matrix products then use
	// kernels.MatMulExact, and attention, to the cache and to the Prefix, runs token
	// by token (a Prefix gets one Attend call per token). Speculative decoding verifies
	// drafts this way, so that its output is exactly plain decoding's; it costs part of
	// the batch's speed-up.
	Exact bool
}

// LayerState is what Options.Observe receives: one layer's values for a pass of Tokens
// tokens at positions Pos..Pos+Tokens-1. Every slice is token-major.
type LayerState struct {
	// Layer is the layer's index, from 0.
	Layer int
	// Pos is the position of the pass's first token; Tokens is the number of tokens.
	Pos, Tokens int
	// Input is the hidden state entering the layer (for layer 0, the token embeddings):
	// Tokens x Dim.
	Input []float32
	// KeysPreRoPE are the key projections before rotation: Tokens x KVDim (KVHeads heads
	// of HeadDim values, head-major within a token).
	KeysPreRoPE []float32
	// Keys are the same keys rotated to their positions, as the cache stores them.
	Keys []float32
	// Values are the value projections: Tokens x KVDim.
	Values []float32
	// Hidden is the hidden state leaving the layer (the residual stream after its
	// attention and feed-forward blocks): Tokens x Dim.
	Hidden []float32
}

// Forward runs tokens at positions c.Len()..c.Len()+len(tokens)-1 and appends their keys
// and values to c. If logits is not nil, it receives the logits of the last token
// (Vocab values) or, with opt.AllLogits, of every token (len(tokens) x Vocab). A nil
// logits skips the LM head, as a prefill whose logits nobody reads should.
//
// Forward fails without changing c if the tokens do not fit in c (ErrContextFull), a token
// id is out of range (ErrToken), or logits is too short. The Pool's threads share every
// matrix product and the attention heads.
func (m *Model) Forward(p *kernels.Pool, c *Cache, tokens []int32, logits []float32, opt *Options) error {
	if opt == nil {
		opt = &Options{}
	}
	if p == nil || c == nil {
		return errors.New("model: Forward needs a pool and a cache")
	}
	if c.m != m {
		return errors.New("model: the cache belongs to another model")
	}
	n := len(tokens)
	if n == 0 {
		return errors.New("model: forward pass of no tokens")
	}
	if c.n+n > c.cap {
		return fmt.Errorf("%w: %d tokens at position %d need %d positions, the cache holds %d (%d over)",
			ErrContextFull, n, c.n, c.n+n, c.cap, c.n+n-c.cap)
	}
	vocab := m.Config.Vocab
	for i, t := range tokens {
		if t < 0 || int(t) >= vocab {
			return fmt.Errorf("%w: token %d (at %d) with a vocabulary of %d", ErrToken, t, i, vocab)
		}
	}
	if logits != nil {
		want := vocab
		if opt.AllLogits {
			want = n * vocab
		}
		if len(logits) < want {
			return fmt.Errorf("model: logits has room for %d values, %d tokens need %d", len(logits), n, want)
		}
	}
	for start := 0; start < n; start += MaxBatch {
		nb := min(MaxBatch, n-start)
		var out []float32
		switch {
		case logits == nil:
		case opt.AllLogits:
			out = logits[start*vocab : (start+nb)*vocab]
		case start+nb == n:
			out = logits[:vocab]
		}
		m.pass(p, c, tokens[start:start+nb], out, opt)
	}
	return nil
}

// Head applies the final RMSNorm and the LM head to n hidden states (n x Dim, for example
// a LayerState's Hidden from an early layer), writing n x Vocab logits. hidden is
// overwritten with its normalized form.
func (m *Model) Head(p *kernels.Pool, hidden []float32, n int, logits []float32) {
	m.finalNorm(hidden, n)
	kernels.MatMul(p, logits, m.output, hidden, n)
}

// finalNorm applies the final RMSNorm to n hidden states in place.
func (m *Model) finalNorm(hidden []float32, n int) {
	h := hidden[:n*m.Config.Dim]
	rmsNorm(h, h, m.outNorm, m.Config.NormEps, m.Config.Dim)
}

// pass runs one batch of at most MaxBatch tokens through every layer.
// logits, if not nil, receives the last token's logits, or every token's if all is set.
func (m *Model) pass(p *kernels.Pool, c *Cache, tokens []int32, logits []float32, opt *Options) {
	cfg := &m.Config
	n, pos := len(tokens), c.n
	all, observe, prefix := opt.AllLogits, opt.Observe, opt.Prefix
	matMul := kernels.MatMul
	if opt.Exact {
		matMul = kernels.MatMulExact
	}
	ws := &c.ws
	ws.ensure(c, n, p.Threads())
	rotPos := pos // the position RoPE gives the pass's first token
	if prefix != nil {
		ws.ensurePrefix(n, cfg)
		rotPos += prefix.Len()
	}
	dim, kvDim := cfg.Dim, cfg.KVDim()
	half := cfg.RopeDim / 2
	x, xb := ws.x[:n*dim], ws.xb[:n*dim]
	eps := cfg.NormEps

	if observe != nil && len(ws.input) < n*dim {
		ws.input = make([]float32, n*dim)
		ws.kPre = make([]float32, n*kvDim)
	}
	for i, t := range tokens {
		m.embed.Row(x[i*dim:(i+1)*dim], int(t))
		m.angles(ws.cos[i*half:(i+1)*half], ws.sin[i*half:(i+1)*half], rotPos+i)
	}
	spans := [1]span{{pos: pos, hi: n}}
	for li := range m.layers {
		if observe != nil {
			copy(ws.input[:n*dim], x)
		}
		spans[0].layer = li
		m.block(p, c, &m.layers[li], spans[:], n, prefix, opt.Exact, observe != nil)
		if observe != nil {
			ws.state = LayerState{
				Layer: li, Pos: pos, Tokens: n,
				Input:       ws.input[:n*dim],
				KeysPreRoPE: ws.kPre[:n*kvDim],
				Keys:        ws.k[:n*kvDim],
				Values:      ws.v[:n*kvDim],
				Hidden:      x,
			}
			observe(&ws.state)
		}
	}
	c.n += n

	switch {
	case logits == nil:
	case !all && n > 1:
		last := x[(n-1)*dim:]
		kernels.RMSNorm(xb[:dim], last, m.outNorm, eps)
		kernels.MatVec(p, logits, m.output, xb[:dim])
	default:
		rmsNorm(xb, x, m.outNorm, eps, dim)
		matMul(p, logits, m.output, xb, n)
	}
}

// span is a run of a pass's rows that sit at consecutive positions of one cache layer:
// rows [lo, hi) at positions pos.., which attend to the keys and values of layer and
// append theirs to it.
type span struct {
	layer, pos, lo, hi int
}

// block runs one transformer block with the weights w on the n rows of ws.x, in place.
// The spans cover rows 0..n-1 in order (one span for Forward; several when the rows sit
// at different depths, see ForwardLayers): every matrix product serves all n rows, while
// each span stores its keys and values and attends in its own cache layer. ws.cos and
// ws.sin hold each row's RoPE angles. exact is Options.Exact; keepPre copies the keys
// before rotation to ws.kPre (for Options.Observe).
func (m *Model) block(p *kernels.Pool, c *Cache, w *layer, spans []span, n int, prefix Prefix, exact, keepPre bool) {
	cfg := &m.Config
	ws := &c.ws
	matMul := kernels.MatMul
	if exact {
		matMul = kernels.MatMulExact
	}
	dim, qDim, kvDim, hd, heads := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.HeadDim, cfg.Heads
	half := cfg.RopeDim / 2
	x, xb := ws.x[:n*dim], ws.xb[:n*dim]
	q, k, v := ws.q[:n*qDim], ws.k[:n*kvDim], ws.v[:n*kvDim]
	att, proj := ws.att[:n*qDim], ws.proj[:n*dim]
	eps := cfg.NormEps
	scale := float32(1 / math.Sqrt(float64(hd)))

	rmsNorm(xb, x, w.attnNorm, eps, dim)
	matMul(p, q, w.wq, xb, n)
	matMul(p, k, w.wk, xb, n)
	matMul(p, v, w.wv, xb, n)
	if w.bq != nil {
		addBias(q, w.bq)
		addBias(k, w.bk)
		addBias(v, w.bv)
	}
	if keepPre {
		copy(ws.kPre[:n*kvDim], k)
	}
	for i := range n {
		cos, sin := ws.cos[i*half:(i+1)*half], ws.sin[i*half:(i+1)*half]
		qi := q[i*qDim : (i+1)*qDim]
		m.rotate(qi, cos, sin)
		kernels.Scale(qi, scale)
		m.rotate(k[i*kvDim:(i+1)*kvDim], cos, sin)
	}
	// Each span's attention sees its rows as the workspace's first ones.
	q0, att0, lse0 := ws.q, ws.att, ws.attLSE
	if exact || len(spans) > 1 && allSingle(spans) {
		// Every row attends to the cache as a one-token pass would: all of them in one
		// hand-out to the pool (attentionRows), then each span's prefix.
		c.attendRows(p, spans, prefix, exact)
	} else {
		for _, s := range spans {
			ns := s.hi - s.lo
			c.store(s.layer, s.pos, ns, k[s.lo*kvDim:], v[s.lo*kvDim:])
			ws.q, ws.att = q0[s.lo*qDim:s.hi*qDim], att0[s.lo*qDim:s.hi*qDim]
			if prefix == nil {
				c.attention(p, s.layer, s.pos, ns, false)
				continue
			}
			ws.attLSE = lse0[s.lo*heads : s.hi*heads]
			c.attention(p, s.layer, s.pos, ns, true)
			prefix.Attend(s.layer, ws.q, ns, ws.pre[:ns*qDim], ws.preLSE[:ns*heads])
			ws.mergePrefix(ns, heads, hd)
		}
	}
	ws.q, ws.att, ws.attLSE = q0, att0, lse0
	matMul(p, proj, w.wo, att, n)
	kernels.Add(x, proj)
	c.feedForward(p, w, n, matMul)
}

// feedForward runs the feed-forward half of block w on the n rows of ws.x, in place.
func (c *Cache) feedForward(p *kernels.Pool, w *layer, n int, matMul func(*kernels.Pool, []float32, *kernels.Matrix, []float32, int)) {
	cfg := &c.m.Config
	ws := &c.ws
	dim := cfg.Dim
	x, xb, proj := ws.x[:n*dim], ws.xb[:n*dim], ws.proj[:n*dim]
	gate, up := ws.gate[:n*cfg.FFN], ws.up[:n*cfg.FFN]
	rmsNorm(xb, x, w.ffnNorm, cfg.NormEps, dim)
	matMul(p, gate, w.gate, xb, n)
	matMul(p, up, w.up, xb, n)
	kernels.SiLUMul(gate, up)
	matMul(p, proj, w.down, gate, n)
	kernels.Add(x, proj)
}

// Rotate applies the model's RoPE for position pos to x, one token's queries or keys
// (a whole number of HeadDim-long heads), in place: what Forward does to the keys it
// caches, for callers that store keys before rotation.
func (m *Model) Rotate(x []float32, pos int) {
	var buf [2 * 128]float32
	half := m.Config.RopeDim / 2
	var cos, sin []float32
	if half <= len(buf)/2 {
		cos, sin = buf[:half], buf[half:2*half]
	} else {
		cos, sin = make([]float32, half), make([]float32, half)
	}
	m.angles(cos, sin, pos)
	m.rotate(x, cos, sin)
}

// angles sets cos and sin (RopeDim/2 each) to the rotation of position pos.
func (m *Model) angles(cos, sin []float32, pos int) {
	for i, f := range m.invFreq {
		s, c := math.Sincos(float64(pos) * f)
		cos[i], sin[i] = float32(c), float32(s)
	}
}

// rotate applies RoPE to every head of x (one token's queries or keys), rotating the
// first RopeDim elements of each head.
func (m *Model) rotate(x, cos, sin []float32) {
	cfg := &m.Config
	if cfg.RopeDim == cfg.HeadDim {
		m.rope.Rotate(x, cos, sin)
		return
	}
	for h := 0; h+cfg.HeadDim <= len(x); h += cfg.HeadDim {
		m.rope.Rotate(x[h:h+cfg.RopeDim], cos, sin)
	}
}

// rmsNorm normalizes each dim-long vector of x into dst.
func rmsNorm(dst, x, weight []float32, eps float32, dim int) {
	for i := 0; i+dim <= len(x); i += dim {
		kernels.RMSNorm(dst[i:i+dim], x[i:i+dim], weight, eps)
	}
}

// addBias adds bias to each len(bias)-long vector of x.
func addBias(x, bias []float32) {
	for i := 0; i+len(bias) <= len(x); i += len(bias) {
		kernels.Add(x[i:i+len(bias)], bias)
	}
}
