package kvquant

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"

	"squeeze/runtime/kernels"
)

// Axis says which elements of a matrix of rows (tokens) × dim (channels) share a Range.
type Axis uint8

// The two axes of KVQuant: keys per channel, values per token.
const (
	// PerChannel gives each channel (column) one Range over all the rows: KVQuant's key
	// quantization (the range comes from the context's own keys, §3.1).
	PerChannel Axis = iota
	// PerToken gives each row one Range over its channels: KVQuant's value quantization.
	PerToken
)

// String returns "channel" or "token".
func (a Axis) String() string {
	if a == PerToken {
		return "token"
	}
	return "channel"
}

// Range maps a vector's non-outlier interval [Mid−Half, Mid+Half] onto [−1, 1]: a value x
// normalizes to u = (x − Mid)/Half and a code c decodes to Mid + Half·Levels[c].
type Range struct {
	Mid, Half float32
}

// Normalize returns (x − Mid)/Half, or 0 when Half is 0 (a constant vector).
func (r Range) Normalize(x float32) float32 {
	if r.Half == 0 {
		return 0
	}
	return (x - r.Mid) / r.Half
}

// Restore returns Mid + Half·u, the inverse of Normalize.
func (r Range) Restore(u float32) float32 { return r.Mid + r.Half*u }

// Of returns the range of element i (row i/dim, channel i%dim) of a rows × dim matrix
// whose ranges Ranges computed along a.
func (a Axis) Of(ranges []Range, dim, i int) Range {
	if a == PerToken {
		return ranges[i/dim]
	}
	return ranges[i%dim]
}

// Ranges splits x, rows of dim values, into dense values and outliers and returns the
// range of every vector along axis (dim ranges PerChannel, one per row PerToken) and, per
// element, whether it is an outlier. frac in [0, 0.5) is the fraction of outliers, half at
// each end:
//
//   - PerChannel (keys): in each channel, the round(frac/2·rows) smallest and as many
//     largest values (by rank) are cut off; the range spans the remaining lowest and
//     highest values, lo and hi. The outliers are the values strictly below lo or above
//     hi, so values tied with lo or hi stay dense. Mid = (lo+hi)/2, Half = (hi−lo)/2 as
//     float32; Quantize, given these ranges, marks as outliers the values whose normalized
//     magnitude exceeds 1, which are these (and, for other rows, whatever falls outside).
//   - PerToken (values): a vector of dim values is too short for its own percentiles (0.5%
//     of 64 channels is a third of a value), so the thresholds are per vector in units of
//     its spread: every element gets z = (x − mean)/std of its row, and the
//     round(frac/2·rows·dim) elements of largest z and as many of smallest z over the whole
//     matrix (by rank, ties to the lower index) are the outliers. Each row's range spans
//     its remaining values: the range of smallest Half on the grid the rows' ranges are
//     stored on in 2 bytes a row (Half a step of 2^(1/32), Mid a multiple of Half/64, both
//     half floats; see EncodeTokenRanges) that keeps both ends inside [−1, 1] after
//     normalization. Where some row has no such range (its values all equal and nonzero,
//     or beyond the grid), every row gets the half floats nearest its midpoint and
//     half-width instead (Half rounded up as needed).
//
// With frac = 0 there are no outliers and the ranges are min-max. A vector whose values
// are all outliers (impossible for frac < 0.5 PerChannel) gets Range{}. Errors wrap
// ErrInvalid.
func Ranges(x []float32, dim int, axis Axis, frac float64) ([]Range, []bool, error) {
	if err := checkShape(x, dim); err != nil {
		return nil, nil, err
	}
	if !(frac >= 0 && frac < 0.5) {
		return nil, nil, fmt.Errorf("%w: outlier fraction %v, want [0, 0.5)", ErrInvalid, frac)
	}
	rows := len(x) / dim
	out := make([]bool, len(x))
	if axis == PerChannel {
		return channelRanges(x, dim, rows, frac, out), out, nil
	}
	return tokenRanges(x, dim, rows, frac, out), out, nil
}

// checkShape checks that x holds whole rows of dim finite values.
func checkShape(x []float32, dim int) error {
	if dim < 1 || dim > maxDim {
		return fmt.Errorf("%w: dimension %d", ErrInvalid, dim)
	}
	if len(x)%dim != 0 {
		return fmt.Errorf("%w: %d values are not rows of %d", ErrInvalid, len(x), dim)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: value %d is %v", ErrInvalid, i, v)
		}
	}
	return nil
}

// maxDim bounds the row length (outlier indices are 16 bits wide within blocks of rows).
const maxDim = 4096

func channelRanges(x []float32, dim, rows int, frac float64, out []bool) []Range {
	k := int(math.Round(frac / 2 * float64(rows)))
	ranges := make([]Range, dim)
	col := make([]float32, rows)
	for c := range dim {
		for r := range rows {
			col[r] = x[r*dim+c]
		}
		if rows == 0 {
			continue
		}
		slices.Sort(col)
		lo, hi := col[k], col[rows-1-k]
		ranges[c] = Range{Mid: (lo + hi) / 2, Half: (hi - lo) / 2}
		// The float32 midpoint may shift an end a rounding step outside [−1, 1]; widen Half
		// until both ends normalize inside.
		r := &ranges[c]
		for r.Half > 0 && (r.Normalize(hi) > 1 || r.Normalize(lo) < -1) {
			r.Half = math.Nextafter32(r.Half, float32(math.Inf(1)))
		}
		for i := range rows {
			v := x[i*dim+c]
			out[i*dim+c] = v < lo || v > hi
		}
	}
	return ranges
}

// rankScratch is tokenRanges' scratch for ranking a matrix's values: reused across calls
// (a generation quantizing its tokens on append calls it once per moved block and KV
// head), so that ranking leaves no garbage behind.
type rankScratch struct {
	z   []float32
	idx []int32
}

var rankScratchPool = sync.Pool{New: func() any { return new(rankScratch) }}

func tokenRanges(x []float32, dim, rows int, frac float64, out []bool) []Range {
	k := int(math.Round(frac / 2 * float64(rows*dim)))
	if k > 0 {
		sc := rankScratchPool.Get().(*rankScratch)
		defer rankScratchPool.Put(sc)
		z := slices.Grow(sc.z[:0], len(x))[:len(x)]
		clear(z) // a row with no spread keeps z = 0
		for r := range rows {
			row := x[r*dim : (r+1)*dim]
			var s, q float64
			for _, v := range row {
				s += float64(v)
			}
			mean := s / float64(dim)
			for _, v := range row {
				q += (float64(v) - mean) * (float64(v) - mean)
			}
			std := math.Sqrt(q / float64(dim))
			for c, v := range row {
				if std > 0 {
					z[r*dim+c] = float32((float64(v) - mean) / std)
				}
			}
		}
		idx := slices.Grow(sc.idx[:0], len(x))[:len(x)]
		sc.z, sc.idx = z, idx
		for i := range idx {
			idx[i] = int32(i)
		}
		slices.SortFunc(idx, func(a, b int32) int {
			if c := cmp.Compare(z[a], z[b]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		for _, i := range idx[:k] {
			out[i] = true
		}
		// The largest z, ties to the lower index: the last k of the order, which puts
		// equal z in ascending index, so walk back through runs of equal z.
		marked := 0
		for e := len(idx); e > 0 && marked < k; {
			s := e - 1
			for s > 0 && z[idx[s-1]] == z[idx[e-1]] {
				s--
			}
			for _, i := range idx[s:e] {
				if marked == k {
					break
				}
				if !out[i] {
					out[i] = true
					marked++
				}
			}
			e = s
		}
	}
	lo, hi := make([]float32, rows), make([]float32, rows)
	for r := range rows {
		lo[r], hi[r] = float32(math.Inf(1)), float32(math.Inf(-1))
		for c, v := range x[r*dim : (r+1)*dim] {
			if !out[r*dim+c] {
				lo[r], hi[r] = min(lo[r], v), max(hi[r], v)
			}
		}
	}
	return gridRanges(lo, hi)
}

// halfRange returns a Range whose Mid and Half are half floats (exactly representable)
// and that normalizes lo and hi into [−1, 1].
func halfRange(lo, hi float32) Range {
	mid := kernels.F16ToF32(kernels.F32ToF16((lo + hi) / 2))
	need := max(hi-mid, mid-lo)
	h := kernels.F32ToF16(need)
	half := kernels.F16ToF32(h)
	r := Range{Mid: mid, Half: half}
	for r.Normalize(hi) > 1 || r.Normalize(lo) < -1 {
		h++
		r.Half = kernels.F16ToF32(h)
	}
	return r
}

// f16Round rounds x to the nearest half float.
func f16Round(x float32) float32 { return kernels.F16ToF32(kernels.F32ToF16(x)) }
