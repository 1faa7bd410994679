package kernels

import "unsafe"

// gemmMinN is the batch size from which MatMul packs weight panels and runs the GEMM
// micro-kernel; smaller batches run dotRows per vector over row blocks that stay in
// cache, so the weights still come from memory once per call.
var gemmMinN = 6

// dotBlockBytes is the size of the row blocks the dotRows path reuses for all vectors
// of a batch: well inside L1 with the activations beside it.
const dotBlockBytes = 16 << 10

// matMul is the driver behind MatMul: n == 1 and small batches split rows across the
// pool and use the format's dotRows; larger batches use the tiled GEMM.
func matMul(p *Pool, dst []float32, w *Matrix, x []float32, n int) {
	if n <= 0 || w.Rows == 0 {
		return
	}
	if w.Cols == 0 {
		clear(dst[:n*w.Rows])
		return
	}
	f := formats[w.Type]
	if k := gk; k != nil && n >= gemmMinN {
		matMulGEMM(p, k, f, dst, w, x, n)
		return
	}
	if cap(p.acts) < n {
		p.acts = make([]Activation, n)
	}
	acts := p.acts[:n]
	for i := range acts {
		acts[i].F32 = x[i*w.Cols : (i+1)*w.Cols]
		if f.prepare != nil {
			f.prepare(&acts[i])
		}
	}
	j := &p.rows
	*j = rowsJob{dst: dst, w: w, f: f, acts: acts, block: max(4, dotBlockBytes/w.RowBytes&^3)}
	p.forRange(w.Rows, 16, j)
	*j = rowsJob{}
	for i := range acts {
		acts[i].F32 = nil
	}
}

// rowsJob runs dotRows for every vector over a range of rows.
type rowsJob struct {
	dst   []float32
	w     *Matrix
	f     *format
	acts  []Activation
	block int // rows per block when there are several vectors
}

func (j *rowsJob) run(_, lo, hi int) {
	rb, rows := j.w.RowBytes, j.w.Rows
	if len(j.acts) == 1 {
		j.f.dotRows(j.dst[lo:hi], j.w.Data[lo*rb:hi*rb], rb, &j.acts[0])
		return
	}
	for r := lo; r < hi; r += j.block {
		e := min(hi, r+j.block)
		for v := range j.acts {
			j.f.dotRows(j.dst[v*rows+r:v*rows+e], j.w.Data[r*rb:e*rb], rb, &j.acts[v])
		}
	}
}

// gemmPanel is the number of weight rows packed together: the panel is stored
// transposed, element p of panel row j at p*gemmPanel+j.
const gemmPanel = 32

// gemmKernel is a register-tile micro-kernel over a packed panel: mr tokens by nr
// rows (nr divides gemmPanel), see gemm12x32AVX512.
type gemmKernel struct {
	mr, nr int
	fn     func(k int, a *float32, x *float32, ldx int, c *float32, ldc int)
}

// gk is the micro-kernel in use, nil when cpuHas allows none.
var gk *gemmKernel

func init() { addReinit(func() { gk = gemmKernelFor() }) }

// workerScratch holds one pool worker's reusable buffers.
type workerScratch struct {
	panel []float32 // Cols x gemmPanel, packed
	row   []float32 // one dequantized row
	tile  []float32 // mr x gemmPanel outputs of a partial tile
}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// matMulGEMM splits the weight rows into panels across the pool; each worker
// dequantizes a panel into its scratch and runs the micro-kernel over all tokens.
func matMulGEMM(p *Pool, k *gemmKernel, f *format, dst []float32, w *Matrix, x []float32, n int) {
	cols := w.Cols
	full := n - n%k.mr
	var xpad []float32
	if full < n { // the last tokens, zero-padded to a whole tile
		p.xpad = growF32(p.xpad, k.mr*cols)
		xpad = p.xpad
		copy(xpad, x[full*cols:n*cols])
		clear(xpad[(n-full)*cols:])
	}
	j := &p.gemm
	*j = gemmJob{p: p, k: k, f: f, dst: dst, w: w, x: x, n: n, full: full, xpad: xpad}
	p.forRange((w.Rows+gemmPanel-1)/gemmPanel, 1, j)
	*j = gemmJob{}
}

type gemmJob struct {
	p    *Pool
	k    *gemmKernel
	f    *format
	dst  []float32
	w    *Matrix
	x    []float32
	n    int
	full int       // tokens in whole tiles
	xpad []float32 // tokens full..n-1, zero-padded to mr tokens
}

func (j *gemmJob) run(worker, lo, hi int) {
	s := j.p.scratch[worker]
	cols, rows, rb, mr := j.w.Cols, j.w.Rows, j.w.RowBytes, j.k.mr
	s.panel = growF32(s.panel, cols*gemmPanel)
	s.row = growF32(s.row, cols)
	s.tile = growF32(s.tile, mr*gemmPanel)
	panel := s.panel
	for pn := lo; pn < hi; pn++ {
		r0 := pn * gemmPanel
		nr := min(gemmPanel, rows-r0)
		for c := range nr {
			j.f.dequant(s.row, j.w.Data[(r0+c)*rb:(r0+c+1)*rb])
			for p, v := range s.row {
				panel[p*gemmPanel+c] = v
			}
		}
		if nr < gemmPanel {
			for p := range cols {
				clear(panel[p*gemmPanel+nr : (p+1)*gemmPanel])
			}
		}
		for t := 0; t < j.full; t += mr {
			if nr == gemmPanel {
				j.tile(j.x[t*cols:], j.dst[t*rows+r0:], rows, panel)
				continue
			}
			j.tile(j.x[t*cols:], s.tile, gemmPanel, panel)
			for i := range mr {
				copy(j.dst[(t+i)*rows+r0:(t+i)*rows+r0+nr], s.tile[i*gemmPanel:])
			}
		}
		if j.full < j.n {
			j.tile(j.xpad, s.tile, gemmPanel, panel)
			for i := range j.n - j.full {
				t := j.full + i
				copy(j.dst[t*rows+r0:t*rows+r0+nr], s.tile[i*gemmPanel:])
			}
		}
	}
}

// tile runs the micro-kernel for mr tokens of x (stride Cols) against the whole
// panel, writing c[t*ldc+j] for t < mr, j < gemmPanel.
func (j *gemmJob) tile(x, c []float32, ldc int, panel []float32) {
	cols, mr := j.w.Cols, j.k.mr
	_ = x[(mr-1)*cols+cols-1]
	_ = c[(mr-1)*ldc+gemmPanel-1]
	for h := 0; h < gemmPanel; h += j.k.nr {
		j.k.fn(cols, &panel[h], unsafe.SliceData(x), cols, &c[h], ldc)
	}
}
