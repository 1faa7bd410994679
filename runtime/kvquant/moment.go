package kvquant

import (
	"fmt"
	"math"
)

// Moment is the second moment Σ q·qᵀ of the vectors that rows will be dotted with (for
// keys: the queries, after RoPE), plus a ridge, dim × dim. Quantize given one (Params.Moment)
// chooses each row's codes to keep the error of those dot products small, (x̂ − x)ᵀ M
// (x̂ − x) with x̂ − x rotated to the row's position when the rows are keys before RoPE,
// instead of rounding every value to its nearest signpost on its own: the errors of a
// row's values then partly cancel in the directions the queries look along. Every value
// is still coded by one of the two signposts around it.
type Moment struct {
	Dim int
	// M is row-major and symmetric.
	M []float64
}

// NewMoment returns the second moment of vecs, rows of dim values, plus ridge times its
// mean diagonal on the diagonal (a ridge of 0.05 keeps directions the vectors rarely take
// from being ignored). Errors wrap ErrInvalid.
func NewMoment(vecs []float32, dim int, ridge float64) (*Moment, error) {
	if dim <= 0 || dim > maxDim || len(vecs) == 0 || len(vecs)%dim != 0 {
		return nil, fmt.Errorf("%w: %d values as vectors of %d", ErrInvalid, len(vecs), dim)
	}
	if !(ridge >= 0) || math.IsInf(ridge, 0) {
		return nil, fmt.Errorf("%w: ridge %v", ErrInvalid, ridge)
	}
	m := &Moment{Dim: dim, M: make([]float64, dim*dim)}
	for r := 0; r < len(vecs); r += dim {
		v := vecs[r : r+dim]
		for i, a := range v {
			row := m.M[i*dim : (i+1)*dim]
			for j := i; j < dim; j++ {
				row[j] += float64(a) * float64(v[j])
			}
		}
	}
	var trace float64
	for i := range dim {
		for j := i + 1; j < dim; j++ {
			m.M[j*dim+i] = m.M[i*dim+j]
		}
		trace += m.M[i*dim+i]
	}
	if math.IsNaN(trace) || math.IsInf(trace, 0) {
		return nil, fmt.Errorf("%w: vectors that are not finite", ErrInvalid)
	}
	for i := range dim {
		m.M[i*dim+i] += ridge * trace / float64(dim)
	}
	return m, nil
}

// momentSweeps bounds the passes of refiner.refine over a row.
const momentSweeps = 4

// refiner holds the scratch of refine for one row at a time.
type refiner struct {
	m        *Moment
	t        Datatype
	rot, g   []float64 // the row's error e after rotation, and M·e
	cos, sin []float32
	rope     *RoPE
}

func (m *Moment) refiner(t Datatype, rope *RoPE) *refiner {
	f := &refiner{m: m, t: t, rot: make([]float64, m.Dim), g: make([]float64, m.Dim), rope: rope}
	if rope != nil {
		f.cos, f.sin = make([]float32, rope.ropeDim/2), make([]float32, rope.ropeDim/2)
	}
	return f
}

// partner returns, for value j of a row rotated at angles cos, sin, the values a and b of
// its RoPE pair and the rotated image (va, vb) of a unit step of j; b < 0 when j is not
// rotated.
func (f *refiner) partner(j int) (a, b int, va, vb float64) {
	if f.rope == nil || j >= f.rope.ropeDim {
		return j, -1, 1, 0
	}
	half := f.rope.ropeDim / 2
	var i int
	var first bool
	if f.rope.neox {
		i, first = j%half, j < half
		a, b = i, i+half
	} else {
		i, first = j/2, j%2 == 0
		a, b = 2*i, 2*i+1
	}
	c, s := float64(f.cos[i]), float64(f.sin[i])
	if first { // x'_a = x_a cos − x_b sin, x'_b = x_a sin + x_b cos
		return a, b, c, s
	}
	return a, b, -s, c
}

// refine improves codes, the nearest-rounded codes of row x at position pos (ignored
// without RoPE), whose value j has range rng(j) and is an outlier (kept exactly) where
// out[j]: a few passes over the values try, for each, the other signpost around it, and
// keep a change that lowers eᵀ M e.
func (f *refiner) refine(codes []uint8, x []float32, rng func(j int) Range, out []bool, pos int) {
	d := f.m.Dim
	M := f.m.M
	levels, signposts := f.t.Levels, f.t.Signposts
	if f.rope != nil {
		f.rope.angles(f.cos, f.sin, pos)
	}
	// g = M·R·e: the row's error (outliers have none), rotated, then multiplied.
	rot := f.rot
	clear(rot)
	for j := range d {
		if out[j] {
			continue
		}
		e := float64(rng(j).Restore(levels[codes[j]])) - float64(x[j])
		a, b, va, vb := f.partner(j)
		rot[a] += va * e
		if b >= 0 {
			rot[b] += vb * e
		}
	}
	for i := range d {
		var s float64
		for j, r := range rot {
			s += M[i*d+j] * r
		}
		f.g[i] = s
	}
	for range momentSweeps {
		changed := false
		for j := range d {
			if out[j] {
				continue
			}
			rg := rng(j)
			c := int(codes[j])
			// The other signpost around the value: below it if the code's is above.
			u := rg.Normalize(x[j])
			other := c - 1
			if signposts[c] <= u {
				other = c + 1
			}
			if other < 0 || other >= len(signposts) {
				continue
			}
			a, b, va, vb := f.partner(j)
			delta := float64(rg.Restore(levels[other])) - float64(rg.Restore(levels[c]))
			ua, ub := delta*va, delta*vb
			gain := 2*ua*f.g[a] + ua*ua*M[a*d+a]
			if b >= 0 {
				gain += 2*ub*f.g[b] + 2*ua*ub*M[a*d+b] + ub*ub*M[b*d+b]
			}
			if !(gain < 0) {
				continue
			}
			for i := range d {
				f.g[i] += ua * M[i*d+a]
				if b >= 0 {
					f.g[i] += ub * M[i*d+b]
				}
			}
			codes[j] = uint8(other)
			changed = true
		}
		if !changed {
			break
		}
	}
}
