package earlyexit

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// ErrPredictor means a Predictor's fields are inconsistent (or do not fit a model).
var ErrPredictor = errors.New("earlyexit: bad predictor")

// Predictor maps the hidden state after the first Layer layers (the residual stream that
// enters layer Layer) to a prediction of the final hidden state (before the final norm):
//
//	pred = h + Bias + M h
//
// where M is a full Dim x Dim matrix (Rank == Dim: Full, output-major), a product B A of
// rank Rank < Dim (A: Rank x Dim, B: Dim x Rank, both row-major), or nothing (Rank 0:
// the raw early exit shifted by Bias). The final norm and LM head turn pred into a
// drafted token. calibrate.FitPredictor fits one on a context's own hidden states.
type Predictor struct {
	// Layer is E, the number of layers the drafts run: 1..Layers-1.
	Layer int
	// Dim is the model's hidden size; Rank the rank of M (0..Dim).
	Dim, Rank int
	// Full is M when Rank == Dim; A and B its factors when 0 < Rank < Dim.
	Full, A, B []float32
	// Bias is added to every prediction: Dim values.
	Bias []float32
	// Scores are what the fit measured for each candidate layer (informational).
	Scores []Score

	mats [3]*kernels.Matrix // Full, A, B as matrices, built by Check
}

// Score is the measured quality of early drafts from one layer: the fraction of the
// held-out positions where the drafted token equals the model's greedy next token.
type Score struct {
	// Layer is the candidate E.
	Layer int
	// Acceptance is the agreement with the fitted map; Raw without one (the early
	// exit's own hidden state through the final norm and LM head).
	Acceptance, Raw float64
}

// Identity returns the Predictor of the raw early exit after layer e: the hidden state
// itself goes through the final norm and LM head (what a model trained with early-exit
// losses, like gocode-shared, needs).
func Identity(e, dim int) *Predictor {
	return &Predictor{Layer: e, Dim: dim, Bias: make([]float32, dim)}
}

// Check reports whether p is well formed for a model of cfg's shape (nil cfg checks p
// alone) and prepares it for Apply; it returns an error wrapping ErrPredictor. Call it
// before sharing p (format.ReadArtifact does): Apply only reads p, so many drafters on
// many goroutines may share it.
func (p *Predictor) Check(cfg *model.Config) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrPredictor, fmt.Sprintf(format, args...))
	}
	d, r := p.Dim, p.Rank
	switch {
	case d < 1:
		return bad("dimension %d", d)
	case r < 0 || r > d:
		return bad("rank %d for dimension %d", r, d)
	case p.Layer < 1:
		return bad("layer %d", p.Layer)
	case len(p.Bias) != d:
		return bad("%d bias values for dimension %d", len(p.Bias), d)
	case r == d && (len(p.Full) != d*d || p.A != nil || p.B != nil):
		return bad("a full map needs %d values and no factors, has %d, %d, %d", d*d, len(p.Full), len(p.A), len(p.B))
	case r < d && (p.Full != nil || len(p.A) != r*d || len(p.B) != d*r):
		return bad("a rank-%d map needs factors of %d values and no full matrix, has %d, %d, %d", r, r*d, len(p.Full), len(p.A), len(p.B))
	}
	if cfg != nil && (d != cfg.Dim || p.Layer >= cfg.Layers) {
		return bad("layer %d of dimension %d for a model of %d layers of dimension %d", p.Layer, d, cfg.Layers, cfg.Dim)
	}
	for _, v := range [][]float32{p.Bias, p.Full, p.A, p.B} {
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return bad("a non-finite value %v", x)
			}
		}
	}
	var err error
	mat := func(v []float32, rows, cols int) *kernels.Matrix {
		if err != nil || rows == 0 {
			return nil
		}
		var m *kernels.Matrix
		m, err = kernels.NewMatrix(gguf.TypeF32, rows, cols, f32Bytes(v))
		return m
	}
	p.mats = [3]*kernels.Matrix{}
	if r == d {
		p.mats[0] = mat(p.Full, d, d)
	} else if r > 0 {
		p.mats[1], p.mats[2] = mat(p.A, r, d), mat(p.B, d, r)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPredictor, err)
	}
	return nil
}

// Apply writes the prediction for hidden state h (Dim values) into dst (Dim values, not
// aliasing h); scratch holds at least Rank values. p must have passed Check.
func (p *Predictor) Apply(pool *kernels.Pool, dst, h, scratch []float32) {
	d := p.Dim
	switch {
	case p.mats[0] != nil:
		kernels.MatVec(pool, dst[:d], p.mats[0], h[:d])
	case p.mats[1] != nil:
		kernels.MatVec(pool, scratch[:p.Rank], p.mats[1], h[:d])
		kernels.MatVec(pool, dst[:d], p.mats[2], scratch[:p.Rank])
	default:
		clear(dst[:d])
	}
	kernels.Add(dst[:d], h[:d])
	kernels.Add(dst[:d], p.Bias)
}

// f32Bytes views float32s as their bytes (the kernels read F32 matrices in the machine's
// byte order, little-endian on every target they run on).
func f32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}
