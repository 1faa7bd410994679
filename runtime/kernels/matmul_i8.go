package kernels

import (
	"errors"
	"fmt"
	"unsafe"
)

// I8Matrix is a matrix of int8 rows (Rows x Cols, row-major) for exact integer dot
// products with vectors of bytes (Dots): a compact copy of a float matrix from which
// bounds on its products are cheap to read. It may serve one caller at a time.
type I8Matrix struct {
	Data       []int8
	Rows, Cols int
	job        i8Job
}

// MaxI8Cols is the widest row whose Dots cannot overflow int32: 127*255*Cols < 2^31.
const MaxI8Cols = (1<<31 - 1) / (127 * 255)

// ErrI8Shape means an I8Matrix's data does not match its shape.
var ErrI8Shape = errors.New("kernels: bad int8 matrix shape")

// NewI8Matrix wraps data as a rows x cols I8Matrix; data must hold exactly rows*cols
// values and cols may be at most MaxI8Cols.
func NewI8Matrix(data []int8, rows, cols int) (*I8Matrix, error) {
	if rows < 0 || cols < 0 || cols > MaxI8Cols || len(data) != rows*cols {
		return nil, fmt.Errorf("%w: %d values for %d x %d", ErrI8Shape, len(data), rows, cols)
	}
	return &I8Matrix{Data: data, Rows: rows, Cols: cols}, nil
}

// FastI8Dots reports whether Dots has a SIMD implementation on this CPU (else it runs
// the reference loop, which is far slower than the float kernels).
func FastI8Dots() bool { return dotI8Kernel() != nil }

// Dots sets dst[v*Rows+i] = sum_j int32(Data[i*Cols+j]) * int32(x[v*Cols+j]) for every
// row i < Rows and vector v < n: exact integer dot products, the rows split across the
// pool's threads and read from memory once for all n vectors (a block of rows at a
// time). dst needs n*Rows values and x n*Cols.
func (m *I8Matrix) Dots(p *Pool, dst []int32, x []uint8, n int) {
	if n <= 0 {
		return
	}
	if len(dst) < n*m.Rows || len(x) < n*m.Cols {
		panic(fmt.Sprintf("kernels: I8Matrix.Dots %dx%d by %d vectors: x has %d, dst %d", m.Rows, m.Cols, n, len(x), len(dst)))
	}
	j := &m.job
	*j = i8Job{m: m, dst: dst, x: x, n: n}
	p.forRange(m.Rows, 16, j)
	*j = i8Job{}
}

// i8BlockBytes bounds the rows Dots runs every vector over before moving on (they stay
// in L2 meanwhile).
const i8BlockBytes = 64 << 10

// i8Job is one Dots call, handed to the pool without allocating.
type i8Job struct {
	m   *I8Matrix
	dst []int32
	x   []uint8
	n   int
}

// dotI8Kernels are the SIMD int8 dot products: four sets out[r] = sum_{j<n}
// int32(w[r*stride+j]) * int32(x[j]) for r < 4, and eight the same for groups of 8
// consecutive rows (out[8g+r], row 8g+r at (8g+r)*stride); n is a multiple of 64.
type dotI8Kernels struct {
	four  func(w *int8, stride int, x *uint8, n int, out *int32)
	eight func(w *int8, stride int, x *uint8, n int, out *int32, groups int)
}

func (j *i8Job) run(_, lo, hi int) { j.m.DotsRange(j.dst, j.x, j.n, lo, hi) }

// DotsRange is Dots for rows [lo, hi) only, on the calling goroutine: for callers that
// split the rows across threads themselves (and work on each share's results there).
func (m *I8Matrix) DotsRange(dst []int32, x []uint8, n, lo, hi int) {
	rows, cols := m.Rows, m.Cols
	if lo < 0 || hi > rows || len(dst) < n*rows || len(x) < n*cols {
		panic(fmt.Sprintf("kernels: I8Matrix.DotsRange [%d, %d) of %dx%d by %d vectors: x has %d, dst %d", lo, hi, rows, cols, n, len(x), len(dst)))
	}
	kernel := dotI8Kernel()
	block := max(4, i8BlockBytes/max(1, cols)&^3)
	for b := lo; b < hi; b += block {
		e := min(hi, b+block)
		for v := range n {
			m.rowsOf(kernel, dst[v*rows+b:v*rows+e], b, e, x[v*cols:(v+1)*cols])
		}
	}
}

// rowsOf sets dst[i-lo] to row i's dot with x for rows [lo, hi).
func (m *I8Matrix) rowsOf(kernel *dotI8Kernels, dst []int32, lo, hi int, x []uint8) {
	cols := m.Cols
	r := lo
	if nk := cols &^ 63; kernel != nil && nk > 0 {
		if groups := (hi - r) / 8; nk == cols && groups > 0 {
			kernel.eight(&m.Data[r*cols], cols, unsafe.SliceData(x), nk, &dst[r-lo], groups)
			r += 8 * groups
		}
		for ; r+4 <= hi; r += 4 {
			out := dst[r-lo : r-lo+4]
			kernel.four(&m.Data[r*cols], cols, unsafe.SliceData(x), nk, &out[0])
			for k := range out {
				s := out[k]
				for c := nk; c < cols; c++ {
					s += int32(m.Data[(r+k)*cols+c]) * int32(x[c])
				}
				out[k] = s
			}
		}
	}
	dotRowsI8Ref(dst[r-lo:], m.Data[r*cols:hi*cols], cols, x)
}

// dotRowsI8Ref is the reference: dst[i] = sum_j int32(w[i*cols+j]) * int32(x[j]).
func dotRowsI8Ref(dst []int32, w []int8, cols int, x []uint8) {
	for i := range dst {
		var s int32
		for c, v := range w[i*cols : (i+1)*cols] {
			s += int32(v) * int32(x[c])
		}
		dst[i] = s
	}
}
