package kvquant

import (
	"fmt"
	"math"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// RoPE is a table of rotary position embedding angles for positions 0..Positions()−1, to
// rotate keys stored before RoPE to their positions when they are read. Its rotation is
// the model's (model.Model.Rotate): same frequencies, same float32 cos and sin, same pairs.
// (The fast rotation rounds once per multiply-add, so results may differ from the
// model's in the last bit.) It is immutable and safe for concurrent use.
type RoPE struct {
	headDim, ropeDim int
	neox             bool
	freq             []float64
	cos, sin         []float32 // positions × ropeDim/2
}

// Frequencies returns the angle per position of each RoPE pair of a model with
// configuration cfg, RopeScale·RopeBase^(−2i/RopeDim) divided by factors[i] (the file's
// rope_freqs.weight; nil when the model has none), computed as package model does.
func Frequencies(cfg *model.Config, factors []float32) ([]float64, error) {
	if cfg.RopeDim < 2 || cfg.RopeDim%2 != 0 || cfg.RopeDim > cfg.HeadDim {
		return nil, fmt.Errorf("%w: RoPE dimension %d for heads of %d", ErrInvalid, cfg.RopeDim, cfg.HeadDim)
	}
	if factors != nil && len(factors) != cfg.RopeDim/2 {
		return nil, fmt.Errorf("%w: %d RoPE factors for %d pairs", ErrInvalid, len(factors), cfg.RopeDim/2)
	}
	f := make([]float64, cfg.RopeDim/2)
	for i := range f {
		f[i] = cfg.RopeScale * math.Pow(cfg.RopeBase, -float64(2*i)/float64(cfg.RopeDim))
		if factors != nil {
			if !(factors[i] > 0) {
				return nil, fmt.Errorf("%w: RoPE factor %d is %v", ErrInvalid, i, factors[i])
			}
			f[i] /= float64(factors[i])
		}
	}
	return f, nil
}

// NewRoPE returns the table for heads of headDim values whose first len(freq)·2 values are
// rotated (pairs (2i, 2i+1), or (i, i+len(freq)) when neox) by pos·freq[i], for positions
// below positions. Errors wrap ErrInvalid.
func NewRoPE(headDim int, neox bool, freq []float64, positions int) (*RoPE, error) {
	rd := 2 * len(freq)
	if rd < 2 || rd > headDim || headDim > maxDim {
		return nil, fmt.Errorf("%w: %d RoPE pairs for heads of %d", ErrInvalid, len(freq), headDim)
	}
	if positions < 0 || positions > math.MaxInt32 || positions > (1<<31)/len(freq) {
		return nil, fmt.Errorf("%w: %d RoPE positions", ErrInvalid, positions)
	}
	for i, f := range freq {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: RoPE frequency %d is %v", ErrInvalid, i, f)
		}
	}
	r := &RoPE{
		headDim: headDim, ropeDim: rd, neox: neox, freq: freq,
		cos: make([]float32, positions*len(freq)), sin: make([]float32, positions*len(freq)),
	}
	half := len(freq)
	for p := range positions {
		c, s := r.cos[p*half:(p+1)*half], r.sin[p*half:(p+1)*half]
		for i, f := range freq {
			sn, cs := math.Sincos(float64(p) * f)
			c[i], s[i] = float32(cs), float32(sn)
		}
	}
	return r, nil
}

// Positions is the number of positions the table covers.
func (r *RoPE) Positions() int { return len(r.cos) / (r.ropeDim / 2) }

// HeadDim is the length of the vectors Rotate rotates.
func (r *RoPE) HeadDim() int { return r.headDim }

// NeoX reports whether pairs are (i, i+RopeDim/2) rather than adjacent.
func (r *RoPE) NeoX() bool { return r.neox }

// Frequencies returns the angle per position of each pair (shared; do not modify).
func (r *RoPE) Frequencies() []float64 { return r.freq }

// angles returns the cos and sin of position pos's pairs.
func (r *RoPE) angles(pos int) (cos, sin []float32) {
	half := r.ropeDim / 2
	return r.cos[pos*half : (pos+1)*half], r.sin[pos*half : (pos+1)*half]
}

// Rotate rotates x, one head's HeadDim values, to position pos (below Positions()).
func (r *RoPE) Rotate(x []float32, pos int) {
	cos, sin := r.angles(pos)
	kernels.KVQRotate(x, cos, sin, r.neox)
}

// Check returns an error if r does not rotate as m does (m.Rotate), compared on a probe
// vector at a few positions below Positions(): the artifact and the model must agree.
func (r *RoPE) Check(m *model.Model) error {
	cfg := &m.Config
	if cfg.HeadDim != r.headDim || cfg.RopeDim != r.ropeDim || cfg.NeoX != r.neox {
		return fmt.Errorf("%w: RoPE of %d/%d values (neox %v), the model's %d/%d (neox %v)",
			ErrInvalid, r.ropeDim, r.headDim, r.neox, cfg.RopeDim, cfg.HeadDim, cfg.NeoX)
	}
	a := make([]float32, r.headDim)
	b := make([]float32, r.headDim)
	n := r.Positions()
	for _, p := range []int{1, 7, n / 3, n - 1} {
		if p < 0 || p >= n {
			continue
		}
		for i := range a {
			a[i] = float32(i%7) - 2.5
		}
		copy(b, a)
		r.Rotate(a, p)
		m.Rotate(b, p)
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > 1e-5*(1+math.Abs(float64(b[i]))) {
				return fmt.Errorf("%w: RoPE at position %d differs from the model's (element %d: %v, model %v)", ErrInvalid, p, i, a[i], b[i])
			}
		}
	}
	return nil
}
