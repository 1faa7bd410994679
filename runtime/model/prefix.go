package model

import (
	"math"

	"squeeze/runtime/kernels"
)

// Prefix is attention to a fixed context that precedes a Cache's tokens without being in
// it: the context occupies positions 0..Len()-1, so a Forward with a Prefix rotates its
// tokens to positions Len()+cache position, and each query head attends to the context
// through Attend as well as to the cache; the two softmaxes are merged by their
// log-sum-exps. (package sparse's Session is one: it reads only the keys a query needs.)
type Prefix interface {
	// Len is the number of context positions.
	Len() int
	// Attend computes n tokens' attention to the context in layer. q holds n tokens x
	// Heads x HeadDim queries, rotated to their positions and multiplied by
	// 1/sqrt(HeadDim), so a score is q·k. out receives n x Heads x HeadDim outputs (the
	// softmax-weighted mean of the context's values) and lse n x Heads log-sum-exps of
	// the scores; −Inf (with any finite output) means the head attended to nothing. q is
	// read-only, and none of the slices may be kept after the call.
	Attend(layer int, q []float32, n int, out, lse []float32)
}

// mergePrefix folds the prefix's attention (ws.pre, ws.preLSE) into the cache's (ws.att,
// ws.attLSE) for the n tokens of the current pass: per token and head,
// out = (out_a·e^(lse_a−m) + out_b·e^(lse_b−m)) / (e^(lse_a−m) + e^(lse_b−m)) with
// m = max(lse_a, lse_b).
func (ws *workspace) mergePrefix(n, heads, hd int) {
	for v := range n * heads {
		a, b := ws.attLSE[v], ws.preLSE[v]
		if math.IsInf(float64(b), -1) {
			continue
		}
		out := ws.att[v*hd : (v+1)*hd]
		pre := ws.pre[v*hd : (v+1)*hd]
		if math.IsInf(float64(a), -1) {
			copy(out, pre)
			continue
		}
		m := max(a, b)
		wa := float32(math.Exp(float64(a - m)))
		wb := float32(math.Exp(float64(b - m)))
		t := wa + wb
		kernels.Scale(out, wa/t)
		kernels.Axpy(wb/t, pre, out)
	}
}
