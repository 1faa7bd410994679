package kernels

// matMul is the portable driver: every activation vector is prepared once, then the
// rows are split across the pool.
func matMul(p *Pool, dst []float32, w *Matrix, x []float32, n int) {
	f := formats[w.Type]
	for i := 0; i < n; i++ {
		a := &Activation{F32: x[i*w.Cols : (i+1)*w.Cols]}
		if f.prepare != nil {
			f.prepare(a)
		}
		out := dst[i*w.Rows : (i+1)*w.Rows]
		p.For(w.Rows, 16, func(lo, hi int) {
			f.dotRows(out[lo:hi], w.Data[lo*w.RowBytes:hi*w.RowBytes], w.RowBytes, a)
		})
	}
}
