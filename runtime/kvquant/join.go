package kvquant

import (
	"fmt"
	"sort"

	"squeeze/runtime/kernels"
	"squeeze/runtime/sparse"
)

// Joined is rows stored in parts one after another, such as a context's always-attended
// rows: the attention sink in half precision (sparse.F16Rows), then the last window
// quantized (Rows). It is read-only and safe for concurrent use.
type Joined struct {
	// Parts are the parts in order.
	Parts []sparse.Rows

	start []int // start[i] is the first row of part i; start[len(Parts)] the total
}

// Join returns the rows of parts one after another. Parts must be non-nil; empty parts
// are kept. Errors wrap ErrInvalid.
func Join(parts ...sparse.Rows) (*Joined, error) {
	j := &Joined{Parts: parts, start: make([]int, len(parts)+1)}
	for i, p := range parts {
		if p == nil {
			return nil, fmt.Errorf("%w: part %d is nil", ErrInvalid, i)
		}
		j.start[i+1] = j.start[i] + p.Len()
	}
	return j, nil
}

// Len is the number of rows of all parts.
func (j *Joined) Len() int { return j.start[len(j.Parts)] }

// span calls fn for each part's share of rows [lo, hi): the part, its rows [plo, phi),
// and the offset of plo − lo.
func (j *Joined) span(lo, hi int, fn func(p sparse.Rows, plo, phi, off int)) {
	i := sort.SearchInts(j.start[1:], lo+1) // first part ending after lo
	for ; i < len(j.Parts) && j.start[i] < hi; i++ {
		a, b := max(lo, j.start[i]), min(hi, j.start[i+1])
		if a < b {
			fn(j.Parts[i], a-j.start[i], b-j.start[i], a-lo)
		}
	}
}

// Dots sets dst[i] = q · row(lo+i) for i < hi−lo, part by part.
func (j *Joined) Dots(dst, q []float32, lo, hi int) {
	j.span(lo, hi, func(p sparse.Rows, plo, phi, off int) { p.Dots(dst[off:off+phi-plo], q, plo, phi) })
}

// Dequantize writes rows lo..hi−1 decoded to dst, (hi−lo)·dim values for rows of dim,
// part by part: quantized parts through Rows.Dequantize, f16 parts converted. Parts of
// other types leave their rows untouched.
func (j *Joined) Dequantize(dst []float32, lo, hi int) {
	j.span(lo, hi, func(p sparse.Rows, plo, phi, off int) {
		switch v := p.(type) {
		case *Rows:
			v.Dequantize(dst[off*v.Dim:(off+phi-plo)*v.Dim], plo, phi)
		case *sparse.F16Rows:
			kernels.F16ToF32Slice(dst[off*v.Dim:(off+phi-plo)*v.Dim], v.Data[plo*v.Dim:phi*v.Dim])
		}
	})
}

// Accumulate adds Σ_i w[i]·row(lo+i) to out, for i < hi−lo, part by part.
func (j *Joined) Accumulate(out, w []float32, lo, hi int) {
	j.span(lo, hi, func(p sparse.Rows, plo, phi, off int) { p.Accumulate(out, w[off:off+phi-plo], plo, phi) })
}

var (
	_ sparse.Rows       = (*Joined)(nil)
	_ sparse.Prefetcher = (*Joined)(nil)
)

// Bytes returns the storage rows take: Rows.Bytes for quantized rows, 2 bytes per value
// for sparse.F16Rows, the sum of the parts for Joined, and 0 for other types.
func Bytes(r sparse.Rows) int {
	switch v := r.(type) {
	case *Rows:
		return v.Bytes()
	case *sparse.F16Rows:
		return 2 * len(v.Data)
	case *Joined:
		n := 0
		for _, p := range v.Parts {
			n += Bytes(p)
		}
		return n
	}
	return 0
}

// Outliers returns the number of outliers rows store (0 for f16 rows), parts included.
func Outliers(r sparse.Rows) int {
	switch v := r.(type) {
	case *Rows:
		return v.Outliers()
	case *Joined:
		n := 0
		for _, p := range v.Parts {
			n += Outliers(p)
		}
		return n
	}
	return 0
}
