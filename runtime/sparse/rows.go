package sparse

import "squeeze/runtime/kernels"

// Len is the number of rows.
func (r *F16Rows) Len() int {
	if r.Dim <= 0 {
		return 0
	}
	return len(r.Data) / r.Dim
}

// Dots sets dst[i] = q · row(lo+i) for i < hi-lo, with the SIMD half-precision dot
// product (q holds Dim values).
func (r *F16Rows) Dots(dst, q []float32, lo, hi int) {
	d := r.Dim
	q = q[:d]
	dst = dst[:hi-lo]
	rows := r.Data[lo*d : hi*d]
	for i := range dst {
		dst[i] = kernels.DotF16(q, rows[i*d:(i+1)*d])
	}
}

// Accumulate adds Σ_i w[i] · row(lo+i) to out (Dim values), for i < hi-lo.
func (r *F16Rows) Accumulate(out, w []float32, lo, hi int) {
	d := r.Dim
	out = out[:d]
	w = w[:hi-lo]
	rows := r.Data[lo*d : hi*d]
	for i, wi := range w {
		kernels.AxpyF16(wi, rows[i*d:(i+1)*d], out)
	}
}

// Prefetch starts loading rows [lo, hi) into the L2 cache (kernels.PrefetchL2): a
// selected span is read whole, and many spans' loads in flight at once beat one span's.
func (r *F16Rows) Prefetch(lo, hi int) {
	if lo < 0 || hi*r.Dim > len(r.Data) || lo >= hi {
		return
	}
	kernels.PrefetchL2(r.Data[lo*r.Dim : hi*r.Dim])
}

// NewF16Rows converts rows of dim float32 values to an F16Rows.
func NewF16Rows(dim int, rows []float32) *F16Rows {
	data := make([]uint16, len(rows))
	kernels.F32ToF16Slice(data, rows)
	return &F16Rows{Dim: dim, Data: data}
}

var _ Rows = (*F16Rows)(nil)
