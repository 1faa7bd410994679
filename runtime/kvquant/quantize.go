package kvquant

import (
	"fmt"
	"math"

	"squeeze/runtime/kernels"
)

// DefaultOutliers is KVQuant's default outlier fraction: 1%, half at each end of every
// vector.
const DefaultOutliers = 0.01

// Params says how Quantize stores rows.
type Params struct {
	// Type is the datatype (one per layer for keys and one for values in KVQuant).
	Type Datatype
	// Axis is PerChannel (keys) or PerToken (values; also keys, as an ablation of
	// KVQuant's per-channel keys: they are then read row by row, Rows.Dots, and with
	// Pos and RoPE rotated after decoding).
	Axis Axis
	// Outliers is the fraction of values kept exactly, half at each end (see Ranges).
	Outliers float64
	// Ranges, if set, are the ranges to use instead of ranges computed from the rows:
	// PerChannel, dim ranges (those of a larger set of rows that these belong to);
	// PerToken, one per row. Values normalizing beyond ±1 are then the outliers, and
	// Outliers is ignored.
	Ranges []Range
	// Pos and RoPE mark keys given before RoPE: row i belongs at position Pos[i] and is
	// rotated there when read. Both nil: rows are read as given.
	Pos  []int32
	RoPE *RoPE
	// Moment, if set, is the second moment of the vectors the rows will be dotted with
	// (for keys: queries after RoPE), and each row's codes are chosen to keep those dot
	// products' error small (see Moment) rather than each value's own.
	Moment *Moment
}

// Quantize stores x, rows of dim values, as p says: every value is normalized by its
// Range (from Ranges, or p.Ranges) and coded as the nearest signpost of p.Type; outliers keep
// their value as a half float beside the nearest end code. The result is ready to read
// (Init done). Errors wrap ErrInvalid.
func Quantize(x []float32, dim int, p Params) (*Rows, error) {
	if err := p.Type.Check(); err != nil {
		return nil, err
	}
	if err := checkShape(x, dim); err != nil {
		return nil, err
	}
	n := len(x) / dim
	var ranges []Range
	var out []bool
	switch {
	case p.Ranges != nil && (p.Axis == PerChannel || p.Axis == PerToken):
		want := dim
		if p.Axis == PerToken {
			want = n
		}
		if len(p.Ranges) != want {
			return nil, fmt.Errorf("%w: %d ranges for %d rows of %d along the %v axis", ErrInvalid, len(p.Ranges), n, dim, p.Axis)
		}
		for j, rg := range p.Ranges {
			if !finite32(rg.Mid) || !finite32(rg.Half) || rg.Half < 0 {
				return nil, fmt.Errorf("%w: range %d: %+v", ErrInvalid, j, rg)
			}
		}
		ranges = p.Ranges
		out = make([]bool, len(x))
		for i, v := range x {
			u := p.Axis.Of(ranges, dim, i).Normalize(v)
			out[i] = u > 1 || u < -1
		}
	case p.Axis == PerChannel || p.Axis == PerToken:
		var err error
		if ranges, out, err = Ranges(x, dim, p.Axis, p.Outliers); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: axis %d", ErrInvalid, p.Axis)
	}
	if (p.Pos == nil) != (p.RoPE == nil) || (p.Pos != nil && len(p.Pos) != n) {
		return nil, fmt.Errorf("%w: %d positions and RoPE %v for %d rows", ErrInvalid, len(p.Pos), p.RoPE != nil, n)
	}
	bits := p.Type.Bits()
	r := &Rows{Dim: dim, Bits: bits, Axis: p.Axis, Levels: p.Type.Levels, Pos: p.Pos, RoPE: p.RoPE}
	rb := r.RowBytes()
	r.Codes = make([]byte, n*rb)
	if p.Axis == PerChannel {
		r.Channel = ranges
	} else {
		r.Token = make([]uint16, 2*n)
		for i, rg := range ranges {
			r.Token[2*i], r.Token[2*i+1] = kernels.F32ToF16(rg.Mid), kernels.F32ToF16(rg.Half)
			if f16Round(rg.Mid) != rg.Mid || f16Round(rg.Half) != rg.Half {
				return nil, fmt.Errorf("%w: row %d: range %+v is not in half precision", ErrInvalid, i, rg)
			}
		}
	}
	if p.Moment != nil && p.Moment.Dim != dim {
		return nil, fmt.Errorf("%w: a moment of %d for rows of %d", ErrInvalid, p.Moment.Dim, dim)
	}
	var refine *refiner
	if p.Moment != nil {
		refine = p.Moment.refiner(p.Type, p.RoPE)
	}
	br := BlockRows(dim)
	r.OutStart = make([]uint32, 1, (n+br-1)/br+1)
	codes := make([]uint8, dim)
	for i := range n {
		if i%br == 0 && i > 0 {
			r.OutStart = append(r.OutStart, uint32(len(r.OutIndex)))
		}
		for j, v := range x[i*dim : (i+1)*dim] {
			e := i*dim + j
			rg := p.Axis.Of(ranges, dim, e)
			codes[j] = p.Type.Code(rg.Normalize(v))
			if out[e] {
				r.OutIndex = append(r.OutIndex, uint16(e-(i/br)*br*dim))
				r.OutValue = append(r.OutValue, kernels.F32ToF16(v))
			}
		}
		if refine != nil {
			pos := 0
			if p.Pos != nil {
				pos = int(p.Pos[i])
			}
			refine.refine(codes, x[i*dim:(i+1)*dim], func(j int) Range { return p.Axis.Of(ranges, dim, i*dim+j) }, out[i*dim:(i+1)*dim], pos)
		}
		Pack(r.Codes[i*rb:(i+1)*rb], codes, bits)
	}
	r.OutStart = append(r.OutStart, uint32(len(r.OutIndex)))
	if n == 0 {
		r.OutStart = r.OutStart[:1]
	}
	if err := r.Init(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

// Bound is the largest error Quantize can make on a dense (non-outlier) value of normalized
// value u ∈ [−1, 1] with t's signposts and levels, in units of the vector's Half: half the
// widest gap between neighbouring signposts, the distance from ±1 to the end signposts,
// plus the largest distance between a signpost and its level (Q-Norm).
func (t Datatype) Bound() float32 {
	s := t.Signposts
	b := max(s[0]+1, 1-s[len(s)-1])
	for i := 1; i < len(s); i++ {
		b = max(b, (s[i]-s[i-1])/2)
	}
	var shift float32
	for i, l := range t.Levels {
		shift = max(shift, float32(math.Abs(float64(l-s[i]))))
	}
	return b + shift
}
