package kernels

import (
	"fmt"

	"squeeze/runtime/gguf"
)

// Matrix is a weight matrix of Rows x Cols elements stored row-major in one GGUF format.
type Matrix struct {
	Type       gguf.Type
	Rows, Cols int
	RowBytes   int    // encoded size of one row
	Data       []byte // Rows * RowBytes bytes, usually a slice of a memory-mapped file
}

// NewMatrix checks that data holds exactly rows x cols elements of type t and that the
// kernels support t, and returns the matrix over data (not copied).
func NewMatrix(t gguf.Type, rows, cols int, data []byte) (*Matrix, error) {
	if formats[t] == nil {
		return nil, fmt.Errorf("kernels: weight type %v is not supported", t)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return nil, fmt.Errorf("kernels: %d columns: %w", cols, err)
	}
	if rows < 0 || len(data) != rows*rb {
		return nil, fmt.Errorf("kernels: %v matrix %dx%d needs %d bytes, have %d", t, rows, cols, rows*rb, len(data))
	}
	return &Matrix{Type: t, Rows: rows, Cols: cols, RowBytes: rb, Data: data}, nil
}

// Row dequantizes row r into dst[:m.Cols]. Embedding lookups use it.
func (m *Matrix) Row(dst []float32, r int) {
	formats[m.Type].dequant(dst[:m.Cols], m.Data[r*m.RowBytes:(r+1)*m.RowBytes])
}

// MatVec computes dst[r] = dot(row r of w, x) for every row; len(x) = w.Cols.
func MatVec(p *Pool, dst []float32, w *Matrix, x []float32) { MatMul(p, dst, w, x, 1) }

// MatMul computes, for each of the n activation vectors x[i*w.Cols:(i+1)*w.Cols],
// dst[i*w.Rows+r] = dot(row r of w, that vector). dst must not alias x.
func MatMul(p *Pool, dst []float32, w *Matrix, x []float32, n int) {
	if len(x) < n*w.Cols || len(dst) < n*w.Rows {
		panic(fmt.Sprintf("kernels: MatMul %dx%d by %d vectors: x has %d, dst %d", w.Rows, w.Cols, n, len(x), len(dst)))
	}
	matMul(p, dst, w, x, n)
}
