package kernels

import "math"

// RoPE rotates query and key vectors by their position (rotary position embedding).
type RoPE struct {
	// HeadDim is the length of one head's vector; rotation applies to all of it.
	HeadDim int
	// NeoX pairs element i with i+HeadDim/2 (GPT-NeoX, qwen2); otherwise pairs are
	// adjacent, (2i, 2i+1), as GGUF's llama architecture expects.
	NeoX    bool
	invFreq []float64
	scale   float64
}

// NewRoPE prepares the rotation for heads of headDim (even) elements with base
// frequency theta: pair i turns by pos * posScale * theta^(-2i/headDim), where
// posScale is 1 / the linear scaling factor (1 for none).
func NewRoPE(headDim int, theta, posScale float64, neox bool) *RoPE {
	r := &RoPE{HeadDim: headDim, NeoX: neox, invFreq: make([]float64, headDim/2), scale: posScale}
	for i := range r.invFreq {
		r.invFreq[i] = math.Pow(theta, -float64(2*i)/float64(headDim))
	}
	return r
}

// Angles fills cos and sin (each HeadDim/2 long) for position pos.
func (r *RoPE) Angles(cos, sin []float32, pos int) {
	p := float64(pos) * r.scale
	for i, f := range r.invFreq {
		s, c := math.Sincos(p * f)
		cos[i], sin[i] = float32(c), float32(s)
	}
}

// Rotate rotates every head in x (len(x) a multiple of HeadDim) by the angles from Angles:
// each pair (a, b) becomes (a*cos - b*sin, a*sin + b*cos).
func (r *RoPE) Rotate(x, cos, sin []float32) {
	half := r.HeadDim / 2
	cos, sin = cos[:half], sin[:half]
	for h := 0; h+r.HeadDim <= len(x); h += r.HeadDim {
		v := x[h : h+r.HeadDim]
		if r.NeoX {
			lo, hi := v[:half], v[half:]
			for i, c := range cos {
				x0, x1, s := lo[i], hi[i], sin[i]
				lo[i], hi[i] = x0*c-x1*s, x0*s+x1*c
			}
			continue
		}
		for i, c := range cos {
			x0, x1, s := v[2*i], v[2*i+1], sin[i]
			v[2*i], v[2*i+1] = x0*c-x1*s, x0*s+x1*c
		}
	}
}
