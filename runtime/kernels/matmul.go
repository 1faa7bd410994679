package kernels

import (
	"fmt"
	"unsafe"

	"squeeze/runtime/gguf"
)

// dotBlockBytes is the size of the row blocks the batched paths reuse for all vectors
// of a batch: well inside L1 with the activations beside it.
var dotBlockBytes = 16 << 10

// vectorChunkBytes bounds the activation vectors the multi-vector path keeps in L2
// while it streams a thread's rows past them.
var vectorChunkBytes = 256 << 10

// deqMultiMinN is the batch size from which formats without their own multi-vector
// kernel dequantize blocks of rows to f32 and use the f32 one instead of running
// dotRows once per vector. From BenchmarkMatMulPaths on AMD Zen 4: Q8_0's VNNI dotRows
// wins up to about 8 vectors, Q4_K's up to about 16; at 512 the f32 path is 10-20%
// faster than either.
//
// The tiled GEMM (modeGEMM) is chosen only where no multi-vector kernel exists: on the
// same machine it reaches 75-85 GFLOP/s per core at n = 512, while the multi-vector dot
// kernels (4 rows x 4 vectors of accumulators with AVX-512, 4 x 2 with AVX2; each
// weight loaded once for all of them) reach 90-100, about the FMA peak, and 80-90 with
// AVX2 where the GEMM measures 60-95.
var deqMultiMinN = 24

// gemmMinN is the batch size from which a kernel set without multi-vector kernels uses
// the tiled GEMM (with AVX2 alone it beat dotRows per vector by 20-50% at n >= 64).
var gemmMinN = 48

// matMul is the driver behind MatMul: n == 1 splits rows across the pool and uses the
// format's dotRows; batches read each weight from memory once for all vectors, through
// a multi-vector kernel (the float formats directly, others from dequantized blocks) or
// dotRows per vector over cache-sized row blocks.
func matMul(p *Pool, dst []float32, w *Matrix, x []float32, n int) {
	matMulPath(p, dst, w, x, n, false)
}

// MatMulExact is MatMul whose results do not depend on the batch: each vector's outputs
// are bitwise those of MatMul (or MatVec) with that vector alone on the same pool. It
// runs the single-vector kernel once per vector over cache-sized blocks of rows (each
// weight still comes from memory once per call), where MatMul's batched kernels
// accumulate in another order. Speculative decoding verifies drafts with it, so that a
// batch of tokens gets the logits decoding them one at a time would.
func MatMulExact(p *Pool, dst []float32, w *Matrix, x []float32, n int) {
	if len(x) < n*w.Cols || len(dst) < n*w.Rows {
		panic(fmt.Sprintf("kernels: MatMulExact %dx%d by %d vectors: x has %d, dst %d", w.Rows, w.Cols, n, len(x), len(dst)))
	}
	matMulPath(p, dst, w, x, n, true)
}

// matMulPath is matMul; exact forces a per-vector path (modeDotRows, or for the float
// formats modeExactFloat), whose results match n = 1 row by row: both split the rows
// across the pool alike, and within a worker's range a row goes through the same
// kernel (the 4-row one, or the 1-row one for the range's last Rows%4 rows) whatever
// the block it is in.
func matMulPath(p *Pool, dst []float32, w *Matrix, x []float32, n int, exact bool) {
	if n <= 0 || w.Rows == 0 {
		return
	}
	if w.Cols == 0 {
		clear(dst[:n*w.Rows])
		return
	}
	f := formats[w.Type]
	kind, mode := matMulMode(w.Type, n)
	if exact {
		mode = modeDotRows
		if _, isFloat := floatKind(w.Type); isFloat && fk != nil && n > 1 {
			mode = modeExactFloat
		}
	}
	if mode == modeGEMM {
		matMulGEMM(p, gk, f, dst, w, x, n)
		return
	}
	j := &p.rows
	*j = rowsJob{p: p, dst: dst, w: w, f: f, x: x, n: n, mode: mode, kind: kind}
	if mode == modeDotRows {
		if cap(p.acts) < n {
			p.acts = make([]Activation, n)
		}
		j.acts = p.acts[:n]
		for i := range j.acts {
			j.acts[i].F32 = x[i*w.Cols : (i+1)*w.Cols]
			if f.prepare != nil {
				f.prepare(&j.acts[i])
			}
		}
	}
	bytesPerRow := w.RowBytes
	if mode == modeDequantMulti || mode == modeExactFloat && kind != kindF32 && exactMultiFor(kind) == nil {
		bytesPerRow = 4 * w.Cols // blocks widened to f32
	}
	j.block = max(4, dotBlockBytes/bytesPerRow&^3)
	j.vchunk = max(4, vectorChunkBytes/(4*w.Cols)&^3)
	p.forRange(w.Rows, 16, j)
	for i := range j.acts {
		j.acts[i].F32 = nil
	}
	*j = rowsJob{}
}

// MatMul's paths.
const (
	modeDotRows      = iota // the format's dotRows, once per vector
	modeMulti               // dotRowsMulti on the weights themselves (plain float formats)
	modeDequantMulti        // dequantize a block of rows, then dotRowsMulti on f32
	modeGEMM                // pack the activations, dequantize rows, GEMM micro-kernel
	modeExactFloat          // MatMulExact on float formats: exact multi-vector kernels, or the 4-row kernel per vector
)

// matMulForce, when >= 0, makes matMulMode pick that path wherever it is available
// (tests and benchmarks compare the paths with it).
var matMulForce = -1

// matMulMode picks MatMul's path for n vectors of weight type t, and the element kind
// dotRowsMulti then works on.
func matMulMode(t gguf.Type, n int) (kind, mode int) {
	kind, isFloat := floatKind(t)
	multi := fk != nil && fk.multi[kindF32][0] != nil
	if n == 1 {
		return kind, modeDotRows
	}
	switch matMulForce {
	case modeDotRows:
		return kind, modeDotRows
	case modeMulti:
		if isFloat && multi {
			return kind, modeMulti
		}
	case modeDequantMulti:
		if multi {
			return kindF32, modeDequantMulti
		}
	case modeGEMM:
		if gk != nil {
			return kind, modeGEMM
		}
	}
	switch {
	case isFloat && multi:
		return kind, modeMulti
	case multi && n >= deqMultiMinN:
		return kindF32, modeDequantMulti
	case !multi && gk != nil && n >= gemmMinN:
		return kind, modeGEMM
	}
	return kind, modeDotRows
}

// rowsJob computes all vectors' outputs for a range of rows, a cache-sized block of
// rows at a time, so each weight comes from memory once per call.
type rowsJob struct {
	p      *Pool
	dst    []float32
	w      *Matrix
	f      *format
	x      []float32
	n      int
	acts   []Activation // modeDotRows: the prepared vectors
	mode   int
	kind   int // element kind for dotRowsMulti
	block  int // rows per block
	vchunk int // modeMulti: vectors per chunk
}

func (j *rowsJob) run(worker, lo, hi int) {
	rb, rows, cols := j.w.RowBytes, j.w.Rows, j.w.Cols
	if j.n == 1 {
		j.f.dotRows(j.dst[lo:hi], j.w.Data[lo*rb:hi*rb], rb, &j.acts[0])
		return
	}
	if j.mode == modeMulti {
		j.runMulti(worker, lo, hi)
		return
	}
	if j.mode == modeExactFloat {
		j.runExact(worker, lo, hi)
		return
	}
	var deq []float32
	if j.mode == modeDequantMulti {
		s := j.p.scratch[worker]
		s.rows = growF32(s.rows, j.block*cols)
		deq = s.rows
	}
	for r := lo; r < hi; r += j.block {
		e := min(hi, r+j.block)
		wb := j.w.Data[r*rb : e*rb]
		if j.mode == modeDotRows {
			for v := range j.acts {
				j.f.dotRows(j.dst[v*rows+r:v*rows+e], wb, rb, &j.acts[v])
			}
			continue
		}
		// modeDequantMulti: the block in f32, then rows a quarter of the block apart.
		m := e - r
		for i := range m {
			j.f.dequant(deq[i*cols:(i+1)*cols], wb[i*rb:(i+1)*rb])
		}
		db := f32Bytes(deq[:m*cols])
		q := m / 4
		for v := 0; v < j.n; v += fk.multiMax {
			nv := min(fk.multiMax, j.n-v)
			dotRowsMulti(j.dst[v*rows+r:], rows, db, 4*cols, q, q, j.x[v*cols:], cols, cols, nv, j.kind)
			for i := 4 * q; i < m; i++ {
				for u := v; u < v+nv; u++ {
					dotRowsFloat(j.dst[u*rows+r+i:u*rows+r+i+1], db[i*4*cols:(i+1)*4*cols], 4*cols, j.x[u*cols:(u+1)*cols], j.kind)
				}
			}
		}
	}
}

// runExact is modeExactFloat over rows [lo, hi). Where the exact multi-vector kernels
// read the format, it runs them on the rows themselves, as runMulti runs its kernels:
// rows a quarter of the range apart together (long streams from memory), a block of
// them at a time for every vector. Otherwise it widens a block of rows to f32 at a time
// (the f32 kernels accumulate exactly as the f16 and bf16 ones do on the widened
// values: same unrolling and reduction) and runs the f32 kernels on it.
func (j *rowsJob) runExact(worker, lo, hi int) {
	rb, cols := j.w.RowBytes, j.w.Cols
	multi := exactMultiFor(j.kind) // at call time: tests switch the kernel sets
	if multi != nil || j.kind == kindF32 {
		j.exactRows(worker, j.w.Data[lo*rb:hi*rb], lo, hi-lo, rb, j.kind, multi, max(1, j.block/4))
		return
	}
	s := j.p.scratch[worker]
	s.rows = growF32(s.rows, j.block*cols)
	for r := lo; r < hi; r += j.block {
		m := min(hi, r+j.block) - r
		for i := range m {
			j.f.dequant(s.rows[i*cols:(i+1)*cols], j.w.Data[(r+i)*rb:(r+i+1)*rb])
		}
		j.exactRows(worker, f32Bytes(s.rows[:m*cols]), r, m, 4*cols, kindF32, exactMultiFor(kindF32), m)
	}
}

// exactMultiFunc is an exact multi-vector kernel (see exact_amd64.go): for count groups
// of 4 rows (group g's row r at g*step + r*stride bytes after w) and V vectors,
// out[v*ostride+g+r*rstride] = the dot of the row with x[v*xstride:][:n].
type exactMultiFunc func(w unsafe.Pointer, stride int, x *float32, xstride int, n int, out *float32, ostride int, rstride int, count int, step int)

// exactRows computes every vector's dots with the m rows from row r (in wb, rb bytes
// apart, of element kind) as dotRowsFloat computes one vector's: rows a quarter of the
// range apart through the exact multi-vector kernels (the 4-row kernel's accumulation,
// several vectors per weight load; multi[V-2] for V vectors, one call for a block of
// sub groups) or the 4-row kernel, sub of each quarter at a time for all vectors, then
// the last m%4 rows through the 1-row kernel.
func (j *rowsJob) exactRows(worker int, wb []byte, r, m, rb, kind int, multi []exactMultiFunc, sub int) {
	rows, cols := j.w.Rows, j.w.Cols
	q := m / 4
	nk := cols &^ (fk.width - 1)
	for i0 := 0; i0 < q; i0 += sub {
		cnt := min(q, i0+sub) - i0
		for v := 0; v < j.n; {
			nv := min(len(multi)+1, j.n-v)
			if len(multi) > 0 && j.n-v == len(multi)+2 {
				// One vector past the widest kernel: two narrower calls share the
				// weights better than the widest and the 1-vector kernel.
				nv = (j.n - v + 1) / 2
			}
			if nv == 1 {
				for i := i0; i < i0+cnt; i++ {
					fk.dot4[kind](unsafe.Pointer(&wb[i*rb]), q*rb, &j.x[v*cols], nk, &j.dst[v*rows+r+i], q)
				}
			} else {
				multi[nv-2](unsafe.Pointer(&wb[i0*rb]), q*rb, &j.x[v*cols], cols, nk, &j.dst[v*rows+r+i0], rows, q, cnt, rb)
			}
			if nk < cols {
				tailDots(j.tail(worker), j.dst[v*rows+r+i0:], rows, wb[i0*rb:], rb, cnt, q, j.x[v*cols:], cols, nk, cols, nv, kind)
			}
			v += nv
		}
	}
	if 4*q < m {
		for v := range j.n {
			dotRowsFloat(j.dst[v*rows+r+4*q:v*rows+r+m], wb[4*q*rb:m*rb], rb, j.x[v*cols:(v+1)*cols], kind)
		}
	}
}

// runMulti is modeMulti over rows [lo, hi): rows a quarter of the range apart go
// through the kernels together (four long streams from memory), a block of them at a
// time so that every vector reuses the block from L1; the vectors come a chunk at a
// time, so that the chunk stays in L2 while the rows pass by.
func (j *rowsJob) runMulti(worker, lo, hi int) {
	rb, rows, cols := j.w.RowBytes, j.w.Rows, j.w.Cols
	if cols <= loopMaxCols && cols%fk.width == 0 {
		if loop := dotLoopFor(j.kind); loop != nil {
			j.runLoop(loop, lo, hi)
			return
		}
	}
	q := (hi - lo) / 4
	sub := max(1, j.block/4)
	// The kernels take each row's first nk elements; tailDots adds the rest as
	// dotRowsMulti would, with each row's tail widened once for all vectors.
	nk := cols &^ (fk.width - 1)
	for v0 := 0; v0 < j.n; v0 += j.vchunk {
		v1 := min(j.n, v0+j.vchunk)
		for i0 := 0; i0 < q; i0 += sub {
			cnt := min(sub, q-i0)
			r := lo + i0
			for v := v0; v < v1; v += fk.multiMax {
				nv := min(fk.multiMax, v1-v)
				if nk > 0 {
					dotRowsMulti(j.dst[v*rows+r:], rows, j.w.Data[r*rb:], rb, cnt, q, j.x[v*cols:], cols, nk, nv, j.kind)
				} else {
					clearQuarters(j.dst[v*rows+r:], rows, cnt, q, nv)
				}
				if nk < cols {
					tailDots(j.tail(worker), j.dst[v*rows+r:], rows, j.w.Data[r*rb:], rb, cnt, q, j.x[v*cols:], cols, nk, cols, nv, j.kind)
				}
			}
		}
		for r := lo + 4*q; r < hi; r++ {
			for v := v0; v < v1; v++ {
				dotRowsFloat(j.dst[v*rows+r:v*rows+r+1], j.w.Data[r*rb:(r+1)*rb], rb, j.x[v*cols:(v+1)*cols], j.kind)
			}
		}
	}
}

// loopMaxCols is the widest row runMulti hands to the looped kernels (dotLoopFor):
// short rows, such as attention's keys, are many kernel calls of little work each, and
// their block stays in cache, so four long streams buy nothing. Tests set it to 0 to
// compare with the other path.
var loopMaxCols = 128

// runLoop is runMulti for short rows without a scalar tail: the looped kernels take
// every group of 4 consecutive rows of [lo, hi) in one call per chunk of vectors (each
// output bitwise dot4xV's, as runMulti's kernels give it), and the last (hi-lo)%4 rows
// go through dotRowsFloat one vector at a time, as in runMulti.
func (j *rowsJob) runLoop(loop []dotLoopFunc, lo, hi int) {
	rb, rows, cols := j.w.RowBytes, j.w.Rows, j.w.Cols
	groups := (hi - lo) / 4
	for v := 0; v < j.n; v += fk.multiMax {
		nv := min(fk.multiMax, j.n-v)
		if groups == 0 {
			break
		}
		if nv == 1 {
			dotRowsFloat(j.dst[v*rows+lo:v*rows+lo+4*groups], j.w.Data[lo*rb:(lo+4*groups)*rb], rb, j.x[v*cols:(v+1)*cols], j.kind)
			continue
		}
		loop[nv-2](unsafe.Pointer(&j.w.Data[lo*rb]), rb, &j.x[v*cols], cols, cols, &j.dst[v*rows+lo], rows, groups)
	}
	for r := lo + 4*groups; r < hi; r++ {
		for v := range j.n {
			dotRowsFloat(j.dst[v*rows+r:v*rows+r+1], j.w.Data[r*rb:(r+1)*rb], rb, j.x[v*cols:(v+1)*cols], j.kind)
		}
	}
}

// tailDots adds to dst[v*dstStride+r], for the rows r = i+j*q (i < cnt, j < 4) of w
// (rowBytes apart, of element kind) and the vectors v < nv (x[v*xStride:]), the
// products of the row's elements [nk, cols) with the vector's, in order, each product
// and each sum rounded, as dotRowsFloat and dotRowsMulti finish a row past the SIMD
// kernels' multiple of the vector width: the same results, but each row's tail is
// widened once for all the vectors, and the four rows' sums run side by side. cols-nk
// is less than the kernel set's width; scratch holds 4 x 16 values (its worker's
// workerScratch.tail).
func tailDots(scratch, dst []float32, dstStride int, w []byte, rowBytes, cnt, q int, x []float32, xStride, nk, cols, nv, kind int) {
	t := cols - nk
	w0, w1, w2, w3 := scratch[:t], scratch[16:16+t], scratch[32:32+t], scratch[48:48+t]
	for i := range cnt {
		r0, r1, r2, r3 := i, i+q, i+2*q, i+3*q
		widenTail(scratch[0:16], t, w[r0*rowBytes:(r0+1)*rowBytes], nk, kind)
		widenTail(scratch[16:32], t, w[r1*rowBytes:(r1+1)*rowBytes], nk, kind)
		widenTail(scratch[32:48], t, w[r2*rowBytes:(r2+1)*rowBytes], nk, kind)
		widenTail(scratch[48:64], t, w[r3*rowBytes:(r3+1)*rowBytes], nk, kind)
		for v := range nv {
			xv := x[v*xStride+nk : v*xStride+cols]
			w0, w1, w2, w3 := w0[:len(xv)], w1[:len(xv)], w2[:len(xv)], w3[:len(xv)]
			o := dst[v*dstStride:]
			s0, s1, s2, s3 := o[r0], o[r1], o[r2], o[r3]
			for c, e := range xv {
				s0 += e * w0[c]
				s1 += e * w1[c]
				s2 += e * w2[c]
				s3 += e * w3[c]
			}
			o[r0], o[r1], o[r2], o[r3] = s0, s1, s2, s3
		}
	}
}

// widenTail sets dst[c] to element nk+c of row (of element kind) for c < t; dst holds
// 16 values, which a whole vector's width of conversion may fill.
func widenTail(dst []float32, t int, row []byte, nk, kind int) {
	if kind == kindF16 {
		// A whole vector's width from nk through the SIMD converter where the row
		// holds it (a cache's row usually does), else one element at a time.
		if k := fk; k != nil && t < k.width && len(row) >= 2*(nk+k.width) {
			k.widenF16(&dst[0], unsafe.Pointer(&row[2*nk]), k.width)
			return
		}
		for c := range t {
			dst[c] = F16ToF32(uint16(row[2*(nk+c)]) | uint16(row[2*(nk+c)+1])<<8)
		}
		return
	}
	for c := range t {
		dst[c] = elemAt(row, nk+c, kind)
	}
}

// clearQuarters zeroes dst[v*dstStride+i+j*q] for i < cnt, j < 4, v < nv: the kernels'
// result for rows of no whole vector width.
func clearQuarters(dst []float32, dstStride, cnt, q, nv int) {
	for v := range nv {
		for k := range 4 {
			clear(dst[v*dstStride+k*q : v*dstStride+k*q+cnt])
		}
	}
}

// tail returns worker's scratch for tailDots.
func (j *rowsJob) tail(worker int) []float32 {
	s := j.p.scratch[worker]
	if len(s.tail) < 64 {
		s.tail = make([]float32, 64)
	}
	return s.tail
}

// f32Bytes views f32 data as its little-endian bytes (only used with SIMD kernels, on
// little-endian targets).
func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
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
	tail []float32 // tailDots' 4 x 16 values
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

// MatVecRows sets dst[k] to the output of row rows[k] of MatVec(p, out, w, x): bitwise
// the value MatVec computes for that row on the same pool (the same kernel: the 4-row
// one or, for the last Rows%4 rows of a worker's share, the 1-row one; the same
// scalar tail), each listed row computed alone. It covers the plain float weight types
// (F32, F16, BF16) and reports false, computing nothing, for the others. A caller that
// needs a few rows of a product, such as the largest logits, reads only those rows.
func MatVecRows(p *Pool, dst []float32, w *Matrix, x []float32, rows []int) bool {
	kind, isFloat := floatKind(w.Type)
	if !isFloat {
		return false
	}
	if len(x) < w.Cols || len(dst) < len(rows) {
		panic(fmt.Sprintf("kernels: MatVecRows %dx%d: x has %d, dst %d for %d rows", w.Rows, w.Cols, len(x), len(dst), len(rows)))
	}
	f := formats[w.Type]
	x = x[:w.Cols]
	rb := w.RowBytes
	for k, r := range rows {
		if r < 0 || r >= w.Rows {
			panic(fmt.Sprintf("kernels: MatVecRows: row %d of %d", r, w.Rows))
		}
		row := w.Data[r*rb : (r+1)*rb]
		if fk == nil || w.Cols == 0 {
			// The reference dotRows and an empty row do not depend on the rows around.
			var a Activation
			a.F32 = x
			f.dotRows(dst[k:k+1], row, rb, &a)
			continue
		}
		lo, hi := p.share(w.Rows, 16, r)
		nk := w.Cols &^ (fk.width - 1)
		var s float32
		if r-lo < (hi-lo)/4*4 {
			// The 4-row kernel's arithmetic for one row does not depend on the other
			// three: run it on four copies of the row.
			fk.dot4[kind](unsafe.Pointer(&row[0]), 0, &x[0], nk, &p.rowOut[0], 1)
			s = p.rowOut[0]
		} else {
			s = fk.dot[kind](&x[0], unsafe.Pointer(&row[0]), nk)
		}
		for c := nk; c < w.Cols; c++ {
			s += x[c] * elemAt(row, c, kind)
		}
		dst[k] = s
	}
	return true
}

// share returns the chunk [lo, hi) of [0, n) that contains i when forRange(n, grain,
// ...) splits [0, n) across p's threads.
func (p *Pool) share(n, grain, i int) (lo, hi int) {
	c := p.chunks(n, max(1, grain))
	parts, bound := c.parts, c.bound
	if parts <= 1 {
		return 0, n
	}
	for k := range parts {
		if lo, hi := bound(k), bound(k+1); i < hi {
			return lo, hi
		}
	}
	return bound(parts - 1), n
}
