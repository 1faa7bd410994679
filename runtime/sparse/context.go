// Package sparse attends to a squeezed fixed context: a context whose keys and values
// were computed once (by precompute), stored cluster by cluster, and indexed by a centroid
// tree per (layer, KV head), so that a query reads only the clusters that matter.
package sparse

import (
	"squeeze/runtime/index"
	"squeeze/runtime/kernels"
)

// Rows is the storage of one (layer, KV head)'s key or value rows, HeadDim values each, in
// the tree's storage order. F16Rows is the plain encoding; quantized encodings implement
// the same interface, so the attention code does not depend on how rows are stored.
type Rows interface {
	// Len is the number of rows.
	Len() int
	// Dots sets dst[i] = q · row(lo+i) for i < hi-lo.
	Dots(dst, q []float32, lo, hi int)
	// Accumulate adds Σ_i w[i] · row(lo+i) to out, for i < hi-lo.
	Accumulate(out, w []float32, lo, hi int)
}

// F16Rows stores rows as IEEE half-precision bits, row-major.
type F16Rows struct {
	Dim  int
	Data []uint16 // Len() * Dim values
}

// Dequantize writes rows lo..hi−1 as float32 to dst, (hi−lo)·Dim values (Decoder).
func (r *F16Rows) Dequantize(dst []float32, lo, hi int) {
	kernels.F16ToF32Slice(dst[:(hi-lo)*r.Dim], r.Data[lo*r.Dim:hi*r.Dim])
}

// Head is one (layer, KV head)'s share of a squeezed context.
type Head struct {
	// Tree indexes the clustered keys; Tree.Order()[i] is the position of stored row i.
	Tree *index.Tree
	// Keys (post-RoPE) and Values of the clustered positions, in the tree's storage order.
	Keys, Values Rows
	// Always are the positions attended by every query whatever the budget (the attention
	// sink at the start of the context and its last window), with their keys (post-RoPE)
	// and values in the same order.
	Always           []int32
	AlwaysK, AlwaysV Rows
}

// Threshold is the lookup setting that meets one budget on the calibration queries.
type Threshold struct {
	// Budget is the requested fraction of the context's keys read per query (centroids
	// included); Fraction is what the calibration queries measured.
	Budget, Fraction float64
	// LogTau holds one log-threshold per tree level, coarse to fine (index.Tree.Lookup).
	LogTau []float32
}

// Context is a squeezed fixed context: what a session needs to attend to it.
type Context struct {
	// Tokens are the context's tokens; they occupy positions 0..len(Tokens)-1.
	Tokens []int32
	// Layers[l][h] is layer l's KV head h.
	Layers [][]Head
	// Thresholds are calibrated settings, ascending by budget.
	Thresholds []Threshold
}
