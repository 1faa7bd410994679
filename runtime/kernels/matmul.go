package kernels

// gemmMinN is the batch size from which MatMul packs the activations and runs the GEMM
// micro-kernel; smaller batches run dotRows per vector over row blocks that stay in
// cache, so the weights still come from memory once per call. Measured on F16
// (AMD Zen 4): dotRows runs at about 50 GFLOP/s per core, the GEMM at about 72 with
// whole 32-token blocks, proportionally less with partial ones.
var gemmMinN = 28

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

// gemmPanel is the number of tokens packed together: the activations are stored
// transposed in blocks of gemmPanel tokens, element p of token j at p*gemmPanel+j, so
// the micro-kernel loads one element of gemmPanel tokens at a time.
const gemmPanel = 32

// gemmBlockBytes bounds the dequantized weight rows a worker keeps (in L2) while it
// streams every token block past them.
const gemmBlockBytes = 128 << 10

// gemmKernel is a register-tile micro-kernel: mr weight rows by nr tokens (nr divides
// gemmPanel), see gemm12x32AVX512 (whose x is the weight rows and a the packed tokens).
type gemmKernel struct {
	mr, nr int
	fn     func(k int, a *float32, x *float32, ldx int, c *float32, ldc int)
}

// gk is the micro-kernel in use, nil when cpuHas allows none.
var gk *gemmKernel

func init() { addReinit(func() { gk = gemmKernelFor() }) }

// workerScratch holds one pool worker's reusable buffers.
type workerScratch struct {
	rows []float32 // a block of dequantized weight rows, padded to whole tiles
	tile []float32 // mr x gemmPanel outputs, weight-row-major
}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// matMulGEMM packs the activations once, then splits the weight rows across the pool;
// each worker dequantizes a block of rows into its scratch and runs the micro-kernel
// over every block of tokens.
func matMulGEMM(p *Pool, k *gemmKernel, f *format, dst []float32, w *Matrix, x []float32, n int) {
	cols := w.Cols
	nb := (n + gemmPanel - 1) / gemmPanel
	p.xT = growF32(p.xT, nb*gemmPanel*cols)
	for b := range nb {
		blk := p.xT[b*gemmPanel*cols : (b+1)*gemmPanel*cols]
		for j := range gemmPanel {
			t := b*gemmPanel + j
			if t >= n {
				for q := range cols {
					blk[q*gemmPanel+j] = 0
				}
				continue
			}
			for q, v := range x[t*cols : (t+1)*cols] {
				blk[q*gemmPanel+j] = v
			}
		}
	}
	block := max(k.mr, gemmBlockBytes/(4*cols)/k.mr*k.mr)
	j := &p.gemm
	*j = gemmJob{p: p, k: k, f: f, dst: dst, w: w, xT: p.xT, n: n, block: block}
	p.forRange(w.Rows, k.mr, j)
	*j = gemmJob{}
}

type gemmJob struct {
	p     *Pool
	k     *gemmKernel
	f     *format
	dst   []float32
	w     *Matrix
	xT    []float32 // the packed tokens
	n     int
	block int // weight rows per block, a multiple of mr
}

func (j *gemmJob) run(worker, lo, hi int) {
	s := j.p.scratch[worker]
	cols, rows, rb, mr := j.w.Cols, j.w.Rows, j.w.RowBytes, j.k.mr
	s.rows = growF32(s.rows, j.block*cols)
	s.tile = growF32(s.tile, mr*gemmPanel)
	for r0 := lo; r0 < hi; r0 += j.block {
		nr := min(j.block, hi-r0)
		for r := range nr {
			j.f.dequant(s.rows[r*cols:(r+1)*cols], j.w.Data[(r0+r)*rb:(r0+r+1)*rb])
		}
		padded := (nr + mr - 1) / mr * mr
		clear(s.rows[nr*cols : padded*cols])
		for b := 0; b*gemmPanel < j.n; b++ {
			xb := j.xT[b*gemmPanel*cols : (b+1)*gemmPanel*cols]
			nt := min(gemmPanel, j.n-b*gemmPanel)
			for t0 := 0; t0 < nr; t0 += mr {
				for h := 0; h < gemmPanel; h += j.k.nr {
					j.k.fn(cols, &xb[h], &s.rows[t0*cols], cols, &s.tile[h], gemmPanel)
				}
				// Scatter the tile: tile[r*gemmPanel+t] is token b*gemmPanel+t, row r0+t0+r.
				for r := range min(mr, nr-t0) {
					out := j.dst[b*gemmPanel*rows+r0+t0+r:]
					tr := s.tile[r*gemmPanel : r*gemmPanel+nt]
					for t, v := range tr {
						out[t*rows] = v
					}
				}
			}
		}
	}
}
