package model

import (
	"errors"
	"fmt"
	"math"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
)

// KVGrad computes the gradient of a sequence's next-token loss with respect to every
// layer's keys before RoPE (the key projection's output, bias included) and values: the
// activations KVQuant quantizes, whose squared gradients are its Fisher information.
//
// The sequence t_0..t_{n-1} takes positions 0..n-1 and attends causally to itself only.
// Its loss is Σ_i w_i·CE_i over i < n-1, where CE_i = −log softmax(logits_i)[t_{i+1}] is
// the cross-entropy of predicting the next token and w holds the caller's weights (nil:
// 1/(n-1) each, the mean).
//
// The forward pass is the model's own (the same kernels as Forward, in f32) and keeps only
// each layer's input (gradient checkpointing); the backward pass recomputes one layer's
// intermediate values at a time from it and propagates the gradient through the LM head,
// the final RMSNorm and, per layer, the SwiGLU block, its RMSNorm, the attention output
// projection, causal softmax attention (grouped-query heads), RoPE (by its transpose, a
// rotation by the opposite angle) and the Q/K/V projections. Products with transposed
// weights, Wᵀg, use one weight matrix at a time, dequantized and transposed into a scratch
// of the largest matrix's size. Memory is O(maxTokens·(Layers·Dim + FFN + QDim)) plus
// one Vocab x Dim scratch and, per pool thread, O(maxTokens·64): about 85 MB for
// gocode-22m at 1024 tokens.
//
// A KVGrad is used by one goroutine at a time; its Run calls may differ in length.
type KVGrad struct {
	// Observe, if set, is called during Run's forward pass with each layer's keys before
	// RoPE and values (len(tokens) x KVDim each, token-major), valid only during the call.
	Observe func(layer int, keys, values []float32)

	m   *Model
	cap int

	xs []float32 // (Layers+1) x cap x Dim: each layer's input, then the last layer's output

	// One layer's recomputed values, token-major.
	xb, q, k, v, att, x2, xb2, gate, up, act []float32 // q and k after RoPE
	r1, r2                                   []float32 // per token: 1/RMS of the two norms' inputs
	cos, sin, nsin                           []float32 // RoPE angles: cap x RopeDim/2

	// Gradients, token-major.
	dx, dx2, dxb, datt, dq, dgate, dup, tmp []float32

	// Attention, head-major: queries and gradients per query head (cap x HeadDim each),
	// keys and values per key/value head, also transposed (HeadDim x n).
	qh, doh, dqh, dkh, dvh []float32
	kg, vg, kgT, vgT       []float32
	workers                []*gradWorker

	wt     []float32 // a transposed weight matrix
	rowBuf []float32 // dequantized rows awaiting transposition
	logits []float32 // lmBlock x Vocab
}

// gradWorker is one thread's attention scratch; its single-thread pool runs the matrix
// products of the heads it owns.
type gradWorker struct {
	pool         *kernels.Pool
	s, dp        []float32 // attnBlock x cap scores or probabilities, and their gradients
	sT, dsT      []float32 // the same transposed: cap x attnBlock
	qT, doT, out []float32 // HeadDim x attnBlock, and cap x HeadDim results
}

// attnBlock is the number of query tokens whose attention KVGrad computes together:
// block i attends to keys [0, i1), so causal masking costs about half the work of full
// products.
const attnBlock = 64

// lmBlock is the number of tokens whose logits exist at once.
const lmBlock = 64

// NewKVGrad returns a KVGrad for sequences of up to maxTokens tokens (at least 2).
func (m *Model) NewKVGrad(maxTokens int) (*KVGrad, error) {
	cfg := &m.Config
	if maxTokens < 2 || maxTokens > 1<<20 {
		return nil, fmt.Errorf("model: gradient pass of %d tokens, want 2 to %d", maxTokens, 1<<20)
	}
	n := maxTokens
	dim, qDim, kvDim, ffn := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.FFN
	half := cfg.RopeDim / 2
	f := func(size int) []float32 { return make([]float32, size) }
	g := &KVGrad{m: m, cap: n}
	g.xs = f((cfg.Layers + 1) * n * dim)
	g.xb, g.x2, g.xb2 = f(n*dim), f(n*dim), f(n*dim)
	g.q, g.att = f(n*qDim), f(n*qDim)
	g.k, g.v = f(n*kvDim), f(n*kvDim)
	g.gate, g.up, g.act = f(n*ffn), f(n*ffn), f(n*ffn)
	g.r1, g.r2 = f(n), f(n)
	g.cos, g.sin, g.nsin = f(n*half), f(n*half), f(n*half)
	g.dx, g.dx2, g.dxb, g.tmp = f(n*dim), f(n*dim), f(n*dim), f(n*dim)
	g.datt, g.dq = f(n*qDim), f(n*qDim)
	g.dgate, g.dup = f(n*ffn), f(n*ffn)
	g.qh, g.doh, g.dqh, g.dkh, g.dvh = f(n*qDim), f(n*qDim), f(n*qDim), f(n*qDim), f(n*qDim)
	g.kg, g.vg, g.kgT, g.vgT = f(n*kvDim), f(n*kvDim), f(n*kvDim), f(n*kvDim)
	largest := cfg.Vocab * dim
	for _, w := range []int{qDim * dim, kvDim * dim, ffn * dim} {
		largest = max(largest, w)
	}
	g.wt = f(largest)
	g.rowBuf = f(transposeRows * max(dim, qDim, ffn))
	g.logits = f(lmBlock * cfg.Vocab)
	return g, nil
}

// ensureWorkers makes one attention worker per pool thread.
func (g *KVGrad) ensureWorkers(threads int) {
	if len(g.workers) == threads {
		return
	}
	hd := g.m.Config.HeadDim
	g.workers = make([]*gradWorker, threads)
	for i := range g.workers {
		g.workers[i] = &gradWorker{
			pool: kernels.NewPool(1),
			s:    make([]float32, attnBlock*g.cap),
			dp:   make([]float32, attnBlock*g.cap),
			sT:   make([]float32, attnBlock*g.cap),
			dsT:  make([]float32, attnBlock*g.cap),
			qT:   make([]float32, hd*attnBlock),
			doT:  make([]float32, hd*attnBlock),
			out:  make([]float32, g.cap*hd),
		}
	}
}

// ErrLossWeights means Run's loss weights do not match its tokens.
var ErrLossWeights = errors.New("model: loss weights do not match the tokens")

// Run computes the loss of tokens (see KVGrad) and writes, for every layer l, the gradient
// with respect to the keys before RoPE into dKeys[l] and with respect to the values into
// dValues[l], len(tokens) x KVDim each, token-major. weights, if not nil, holds
// len(tokens)-1 finite loss weights, one per predicted token. It returns the loss.
func (g *KVGrad) Run(p *kernels.Pool, tokens []int32, weights []float32, dKeys, dValues [][]float32) (float64, error) {
	m := g.m
	cfg := &m.Config
	n := len(tokens)
	if p == nil {
		return 0, errors.New("model: gradient pass needs a pool")
	}
	if n < 2 || n > g.cap {
		return 0, fmt.Errorf("model: gradient pass of %d tokens, want 2 to %d", n, g.cap)
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= cfg.Vocab {
			return 0, fmt.Errorf("%w: token %d (at %d) with a vocabulary of %d", ErrToken, t, i, cfg.Vocab)
		}
	}
	if weights != nil {
		if len(weights) != n-1 {
			return 0, fmt.Errorf("%w: %d weights for %d predicted tokens", ErrLossWeights, len(weights), n-1)
		}
		for i, w := range weights {
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				return 0, fmt.Errorf("%w: weight %d is %v", ErrLossWeights, i, w)
			}
		}
	}
	if len(dKeys) != cfg.Layers || len(dValues) != cfg.Layers {
		return 0, fmt.Errorf("model: gradient pass needs %d layers of keys and values, have %d and %d", cfg.Layers, len(dKeys), len(dValues))
	}
	for l := range cfg.Layers {
		if len(dKeys[l]) < n*cfg.KVDim() || len(dValues[l]) < n*cfg.KVDim() {
			return 0, fmt.Errorf("model: layer %d's gradient buffers hold %d and %d values, %d tokens need %d",
				l, len(dKeys[l]), len(dValues[l]), n, n*cfg.KVDim())
		}
	}
	g.ensureWorkers(p.Threads())
	g.forward(p, tokens)
	loss := g.head(p, tokens, weights)
	for l := cfg.Layers - 1; l >= 0; l-- {
		g.layerForward(p, l, n, nil)
		g.layerBackward(p, l, n, dKeys[l][:n*cfg.KVDim()], dValues[l][:n*cfg.KVDim()])
	}
	return loss, nil
}

// forward embeds the tokens, sets the RoPE angles and runs every layer, keeping each
// layer's input in g.xs.
func (g *KVGrad) forward(p *kernels.Pool, tokens []int32) {
	m := g.m
	cfg := &m.Config
	n, dim, half := len(tokens), cfg.Dim, cfg.RopeDim/2
	x := g.xs[:n*dim]
	for i, t := range tokens {
		m.embed.Row(x[i*dim:(i+1)*dim], int(t))
		m.angles(g.cos[i*half:(i+1)*half], g.sin[i*half:(i+1)*half], i)
		for j, s := range g.sin[i*half : (i+1)*half] {
			g.nsin[i*half+j] = -s
		}
	}
	for l := range cfg.Layers {
		g.layerForward(p, l, n, g.Observe)
	}
}

// layer returns layer l's input (n x Dim) in g.xs.
func (g *KVGrad) layer(l, n int) []float32 {
	dim := g.m.Config.Dim
	return g.xs[l*g.cap*dim : l*g.cap*dim+n*dim]
}

// layerForward recomputes layer l's intermediate values for n tokens from its input and
// writes its output, the next layer's input. observe, if not nil, receives the keys before
// RoPE and the values.
func (g *KVGrad) layerForward(p *kernels.Pool, l, n int, observe func(int, []float32, []float32)) {
	m := g.m
	cfg := &m.Config
	ly := &m.layers[l]
	dim, qDim, kvDim, ffn := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.FFN
	half := cfg.RopeDim / 2
	scale := float32(1 / math.Sqrt(float64(cfg.HeadDim)))
	x := g.layer(l, n)
	xb, x2, xb2 := g.xb[:n*dim], g.x2[:n*dim], g.xb2[:n*dim]
	q, k, v := g.q[:n*qDim], g.k[:n*kvDim], g.v[:n*kvDim]

	invRMSNorm(xb, g.r1[:n], x, ly.attnNorm, cfg.NormEps, dim)
	kernels.MatMul(p, q, ly.wq, xb, n)
	kernels.MatMul(p, k, ly.wk, xb, n)
	kernels.MatMul(p, v, ly.wv, xb, n)
	if ly.bq != nil {
		addBias(q, ly.bq)
		addBias(k, ly.bk)
		addBias(v, ly.bv)
	}
	if observe != nil {
		observe(l, k, v)
	}
	// Rotate (and scale) the queries and keys as Forward does, and lay them out
	// head-major for attention.
	for i := range n {
		cos, sin := g.cos[i*half:(i+1)*half], g.sin[i*half:(i+1)*half]
		qi, ki := q[i*qDim:(i+1)*qDim], k[i*kvDim:(i+1)*kvDim]
		m.rotate(qi, cos, sin)
		kernels.Scale(qi, scale)
		m.rotate(ki, cos, sin)
		scatterHeads(g.qh, qi, i, n, cfg.HeadDim)
		scatterHeads(g.kg, ki, i, n, cfg.HeadDim)
		scatterHeads(g.vg, v[i*kvDim:(i+1)*kvDim], i, n, cfg.HeadDim)
	}
	transposeHeads(g.kgT, g.kg, cfg.KVHeads, n, cfg.HeadDim)
	transposeHeads(g.vgT, g.vg, cfg.KVHeads, n, cfg.HeadDim)
	g.attendHeads(p, n, false)

	copy(x2, x)
	kernels.MatMul(p, g.tmp[:n*dim], ly.wo, g.att[:n*qDim], n)
	kernels.Add(x2, g.tmp[:n*dim])
	invRMSNorm(xb2, g.r2[:n], x2, ly.ffnNorm, cfg.NormEps, dim)
	kernels.MatMul(p, g.gate[:n*ffn], ly.gate, xb2, n)
	kernels.MatMul(p, g.up[:n*ffn], ly.up, xb2, n)
	act := g.act[:n*ffn]
	copy(act, g.gate[:n*ffn])
	kernels.SiLUMul(act, g.up[:n*ffn])
	out := g.layer(l+1, n)
	copy(out, x2)
	kernels.MatMul(p, g.tmp[:n*dim], ly.down, act, n)
	kernels.Add(out, g.tmp[:n*dim])
}

// head runs the final RMSNorm and the LM head over the last layer's output, lmBlock
// tokens at a time, and leaves the gradient of the loss with respect to that output in
// g.dx. It returns the loss.
func (g *KVGrad) head(p *kernels.Pool, tokens []int32, weights []float32) float64 {
	m := g.m
	cfg := &m.Config
	n, dim, vocab := len(tokens), cfg.Dim, cfg.Vocab
	h := g.layer(cfg.Layers, n)
	hn, r := g.xb[:n*dim], g.r1[:n]
	invRMSNorm(hn, r, h, m.outNorm, cfg.NormEps, dim)
	outT := g.transpose(m.output)
	dh := g.dxb[:n*dim]
	clear(dh)
	var loss float64
	mean := float32(1 / float64(n-1))
	for i0 := 0; i0 < n-1; i0 += lmBlock {
		i1 := min(n-1, i0+lmBlock)
		b := i1 - i0
		logits := g.logits[:b*vocab]
		kernels.MatMul(p, logits, m.output, hn[i0*dim:i1*dim], b)
		for r := range b {
			i := i0 + r
			w := mean
			if weights != nil {
				w = weights[i]
			}
			row := logits[r*vocab : (r+1)*vocab]
			target := int(tokens[i+1])
			logit := row[target]
			lse := kernels.Softmax(row)
			loss += float64(w) * float64(lse-logit)
			// d(w·CE)/dlogits = w·(softmax − onehot(target)).
			row[target]--
			kernels.Scale(row, w)
		}
		kernels.MatMul(p, dh[i0*dim:i1*dim], outT, logits, b)
	}
	rmsNormBackward(g.dx[:n*dim], dh, h, r, m.outNorm, dim)
	return loss
}

// layerBackward takes the gradient with respect to layer l's output in g.dx and replaces
// it with the gradient with respect to the layer's input (except for layer 0, whose input
// gradient nobody reads), writing the gradients of the keys before RoPE and of the values
// to dk and dv on the way. The layer's intermediate
// values must be those of layerForward.
func (g *KVGrad) layerBackward(p *kernels.Pool, l, n int, dkOut, dvOut []float32) {
	m := g.m
	cfg := &m.Config
	ly := &m.layers[l]
	dim, qDim, kvDim, ffn, hd := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.FFN, cfg.HeadDim
	half := cfg.RopeDim / 2
	scale := float32(1 / math.Sqrt(float64(hd)))
	dy := g.dx[:n*dim]
	x, x2 := g.layer(l, n), g.x2[:n*dim]
	dxb, tmp := g.dxb[:n*dim], g.tmp[:n*dim]

	// Feed-forward: y = x2 + Wd·(silu(Wg·xb2) ∘ (Wu·xb2)), xb2 = RMSNorm(x2).
	dact, dgate, dup := g.dgate[:n*ffn], g.dgate[:n*ffn], g.dup[:n*ffn]
	kernels.MatMul(p, dact, g.transpose(ly.down), dy, n)
	for i, gv := range g.gate[:n*ffn] {
		sig := float32(1 / (1 + math.Exp(-float64(gv))))
		da := dact[i]
		dup[i] = da * gv * sig
		dgate[i] = da * g.up[i] * sig * (1 + gv*(1-sig))
	}
	kernels.MatMul(p, dxb, g.transpose(ly.gate), dgate, n)
	kernels.MatMul(p, tmp, g.transpose(ly.up), dup, n)
	kernels.Add(dxb, tmp)
	dx2 := g.dx2[:n*dim]
	rmsNormBackward(dx2, dxb, x2, g.r2[:n], ly.ffnNorm, dim)
	kernels.Add(dx2, dy)

	// Attention: x2 = x + Wo·att.
	datt := g.datt[:n*qDim]
	kernels.MatMul(p, datt, g.transpose(ly.wo), dx2, n)
	for i := range n {
		scatterHeads(g.doh, datt[i*qDim:(i+1)*qDim], i, n, hd)
	}
	clear(g.dkh[:n*qDim])
	clear(g.dvh[:n*qDim])
	g.attendHeads(p, n, true)

	// Gather the head-major gradients: queries per head; keys and values summed over the
	// query heads that share them. Then undo RoPE (rotate by the opposite angle) and the
	// query scale.
	group := cfg.Heads / cfg.KVHeads
	dq, dk, dv := g.dq[:n*qDim], dkOut, dvOut
	for i := range n {
		dqi := dq[i*qDim : (i+1)*qDim]
		gatherHeads(dqi, g.dqh, i, n, hd)
		kernels.Scale(dqi, scale)
		dki, dvi := dk[i*kvDim:(i+1)*kvDim], dv[i*kvDim:(i+1)*kvDim]
		clear(dki)
		clear(dvi)
		for h := range cfg.Heads {
			kv := h / group
			at := (h*n + i) * hd
			kernels.Add(dki[kv*hd:(kv+1)*hd], g.dkh[at:at+hd])
			kernels.Add(dvi[kv*hd:(kv+1)*hd], g.dvh[at:at+hd])
		}
		cos, nsin := g.cos[i*half:(i+1)*half], g.nsin[i*half:(i+1)*half]
		m.rotate(dqi, cos, nsin)
		m.rotate(dki, cos, nsin)
	}
	if l == 0 {
		return // nobody needs the gradient of the embeddings
	}
	// q, k, v = Wq·xb (+bq), Wk·xb (+bk), Wv·xb (+bv); xb = RMSNorm(x).
	kernels.MatMul(p, dxb, g.transpose(ly.wq), dq, n)
	kernels.MatMul(p, tmp, g.transpose(ly.wk), dk, n)
	kernels.Add(dxb, tmp)
	kernels.MatMul(p, tmp, g.transpose(ly.wv), dv, n)
	kernels.Add(dxb, tmp)
	rmsNormBackward(dy, dxb, x, g.r1[:n], ly.attnNorm, dim)
	kernels.Add(dy, dx2) // the residual path
}

// attendHeads runs every query head's causal attention over the head-major buffers:
// forward, the output to g.att (token-major), or backward, from the output gradients in
// g.doh to g.dqh, g.dkh and g.dvh (per query head; the caller sums g.dkh and g.dvh over
// each group). Each pool thread takes every threads-th head.
func (g *KVGrad) attendHeads(p *kernels.Pool, n int, backward bool) {
	heads := g.m.Config.Heads
	threads := len(g.workers)
	p.For(threads, 1, func(lo, hi int) {
		for w := lo; w < hi; w++ {
			for h := w; h < heads; h += threads {
				if backward {
					g.headBackward(g.workers[w], h, n)
				} else {
					g.headForward(g.workers[w], h, n)
				}
			}
		}
	})
}

// scores sets s to the attention probabilities of query block [i0, i1) of head h over
// keys [0, i1): (i1-i0) rows of i1, zero beyond each token's own position.
func (g *KVGrad) scores(wk *gradWorker, h, n, i0, i1 int, s []float32) {
	cfg := &g.m.Config
	hd := cfg.HeadDim
	kv := h / (cfg.Heads / cfg.KVHeads)
	keys := f32Matrix(g.kg[kv*n*hd:(kv*n+i1)*hd], i1, hd, hd)
	kernels.MatMul(wk.pool, s, keys, g.qh[(h*n+i0)*hd:(h*n+i1)*hd], i1-i0)
	for r := range i1 - i0 {
		row := s[r*i1 : (r+1)*i1]
		keep := i0 + r + 1
		kernels.Softmax(row[:keep])
		clear(row[keep:])
	}
}

// headForward computes head h's attention output for all n tokens.
func (g *KVGrad) headForward(wk *gradWorker, h, n int) {
	cfg := &g.m.Config
	hd, qDim := cfg.HeadDim, cfg.QDim()
	kv := h / (cfg.Heads / cfg.KVHeads)
	for i0 := 0; i0 < n; i0 += attnBlock {
		i1 := min(n, i0+attnBlock)
		b := i1 - i0
		s := wk.s[:b*i1]
		g.scores(wk, h, n, i0, i1, s)
		valuesT := f32Matrix(g.vgT[kv*n*hd:(kv+1)*n*hd], hd, i1, n)
		out := wk.out[:b*hd]
		kernels.MatMul(wk.pool, out, valuesT, s, b)
		for r := range b {
			copy(g.att[(i0+r)*qDim+h*hd:(i0+r)*qDim+(h+1)*hd], out[r*hd:(r+1)*hd])
		}
	}
}

// headBackward propagates head h's output gradients (g.doh) through its attention. With
// P the probabilities, S the scores (q·k, the scale being folded into q) and dO the
// output gradients: dP = dO·Vᵀ, dS = P∘(dP − rowsum(P∘dP)), dQ = dS·K, dK = dSᵀ·Q and
// dV = Pᵀ·dO, a block of query rows at a time.
func (g *KVGrad) headBackward(wk *gradWorker, h, n int) {
	cfg := &g.m.Config
	hd := cfg.HeadDim
	kv := h / (cfg.Heads / cfg.KVHeads)
	head := func(buf []float32, rows int) []float32 { return buf[h*n*hd : h*n*hd+rows*hd] }
	for i0 := 0; i0 < n; i0 += attnBlock {
		i1 := min(n, i0+attnBlock)
		b := i1 - i0
		pr, dp := wk.s[:b*i1], wk.dp[:b*i1]
		g.scores(wk, h, n, i0, i1, pr)
		values := f32Matrix(g.vg[kv*n*hd:(kv*n+i1)*hd], i1, hd, hd)
		do := g.doh[(h*n+i0)*hd : (h*n+i1)*hd]
		kernels.MatMul(wk.pool, dp, values, do, b)
		for r := range b {
			keep := i0 + r + 1
			prow, drow := pr[r*i1:r*i1+keep], dp[r*i1:r*i1+keep]
			delta := kernels.Dot(prow, drow)
			for j, pj := range prow {
				drow[j] = pj * (drow[j] - delta)
			}
			clear(dp[r*i1+keep : (r+1)*i1])
		}
		keysT := f32Matrix(g.kgT[kv*n*hd:(kv+1)*n*hd], hd, i1, n)
		kernels.MatMul(wk.pool, g.dqh[(h*n+i0)*hd:(h*n+i1)*hd], keysT, dp, b)

		// dK[0:i1] += dSᵀ·Q_block and dV[0:i1] += Pᵀ·dO_block, as products of the
		// block's transposed queries (HeadDim x b) with the columns of dS and P.
		transpose(wk.dsT[:i1*b], dp, b, i1)
		transpose(wk.sT[:i1*b], pr, b, i1)
		transpose(wk.qT[:hd*b], g.qh[(h*n+i0)*hd:(h*n+i1)*hd], b, hd)
		transpose(wk.doT[:hd*b], do, b, hd)
		out := wk.out[:i1*hd]
		kernels.MatMul(wk.pool, out, f32Matrix(wk.qT[:hd*b], hd, b, b), wk.dsT[:i1*b], i1)
		kernels.Add(head(g.dkh, i1), out)
		kernels.MatMul(wk.pool, out, f32Matrix(wk.doT[:hd*b], hd, b, b), wk.sT[:i1*b], i1)
		kernels.Add(head(g.dvh, i1), out)
	}
}

// transposeRows is the number of rows transpose dequantizes at a time.
const transposeRows = 16

// transpose returns w's transpose as an f32 matrix in g.wt (valid until the next call).
func (g *KVGrad) transpose(w *kernels.Matrix) *kernels.Matrix {
	rows, cols := w.Rows, w.Cols
	dst := g.wt[:rows*cols]
	for r0 := 0; r0 < rows; r0 += transposeRows {
		r1 := min(rows, r0+transposeRows)
		buf := g.rowBuf[:(r1-r0)*cols]
		for r := r0; r < r1; r++ {
			w.Row(buf[(r-r0)*cols:(r-r0+1)*cols], r)
		}
		for c := range cols {
			out := dst[c*rows+r0 : c*rows+r1]
			for r := range out {
				out[r] = buf[r*cols+c]
			}
		}
	}
	return f32Matrix(dst, cols, rows, rows)
}

// f32Matrix views data as a rows x cols f32 matrix whose rows start stride elements
// apart.
func f32Matrix(data []float32, rows, cols, stride int) *kernels.Matrix {
	return &kernels.Matrix{Type: gguf.TypeF32, Rows: rows, Cols: cols, RowBytes: 4 * stride, Data: asBytes(data)}
}

// transpose writes the transpose of src (rows x cols) to dst (cols x rows).
func transpose(dst, src []float32, rows, cols int) {
	for r := range rows {
		for c, v := range src[r*cols : (r+1)*cols] {
			dst[c*rows+r] = v
		}
	}
}

// scatterHeads copies token i's heads (x, a whole number of hd-long heads) into the
// head-major buffer dst, where head h of token i is at (h*n+i)*hd.
func scatterHeads(dst, x []float32, i, n, hd int) {
	for h := 0; h*hd < len(x); h++ {
		copy(dst[(h*n+i)*hd:(h*n+i+1)*hd], x[h*hd:(h+1)*hd])
	}
}

// gatherHeads is scatterHeads' inverse.
func gatherHeads(x, src []float32, i, n, hd int) {
	for h := 0; h*hd < len(x); h++ {
		copy(x[h*hd:(h+1)*hd], src[(h*n+i)*hd:(h*n+i+1)*hd])
	}
}

// transposeHeads writes, for each of heads head-major blocks of n x hd in src, its hd x n
// transpose to dst.
func transposeHeads(dst, src []float32, heads, n, hd int) {
	for h := range heads {
		transpose(dst[h*n*hd:(h+1)*n*hd], src[h*n*hd:(h+1)*n*hd], n, hd)
	}
}

// invRMSNorm is rmsNorm that also records each vector's 1/RMS in r.
func invRMSNorm(dst, r, x, weight []float32, eps float32, dim int) {
	for i := range r {
		xi := x[i*dim : (i+1)*dim]
		ss := float64(kernels.Dot(xi, xi))
		r[i] = float32(1 / math.Sqrt(ss/float64(dim)+float64(eps)))
		kernels.RMSNorm(dst[i*dim:(i+1)*dim], xi, weight, eps)
	}
}

// rmsNormBackward writes to dx the gradient with respect to x of y = x·r·w, r = 1/RMS(x),
// given dy: dx = r·w∘dy − x·r³/dim·Σ_k w_k·dy_k·x_k, per vector.
func rmsNormBackward(dx, dy, x, r, weight []float32, dim int) {
	for i, ri := range r {
		xi, dyi, dxi := x[i*dim:(i+1)*dim], dy[i*dim:(i+1)*dim], dx[i*dim:(i+1)*dim]
		var s float64
		for k, v := range xi {
			s += float64(weight[k]) * float64(dyi[k]) * float64(v)
		}
		c := float32(float64(ri) * float64(ri) * float64(ri) * s / float64(dim))
		for k, v := range xi {
			dxi[k] = ri*weight[k]*dyi[k] - v*c
		}
	}
}
