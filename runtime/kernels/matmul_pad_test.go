package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"squeeze/runtime/gguf"
)

// TestDotRowsPadded compares DotRowsPadded and DotRows8 with a float64 reference on random F16 rows
// stored with a stride (a cache's transposed values) at every instruction-set level,
// for spans with and without a partial last chunk; checks that an output depends
// neither on what lies past Cols (NaNs there change nothing) nor on the number of
// vectors beside it, nor on the rows beside it (bitwise); and that it declines what it
// has no kernel for.
func TestDotRowsPadded(t *testing.T) {
	for _, fn := range []struct {
		name string
		dot  func(dst []float32, w *Matrix, x []float32, n int) bool
		mult int // the multiple of which Cols must be
	}{{"padded", DotRowsPadded, 1}, {"8", DotRows8, 8}} {
		t.Run(fn.name, func(t *testing.T) { testDotRowsPadded(t, fn.dot, fn.mult) })
	}
}

// testDotRowsPadded is TestDotRowsPadded for one of the functions (dot), whose Cols
// must be a multiple of mult.
func testDotRowsPadded(t *testing.T, dot func(dst []float32, w *Matrix, x []float32, n int) bool, mult int) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(61, 62))
		for _, sh := range []struct{ rows, cols, stride, n int }{
			{4, 0, 16, 3}, {4, 1, 17, 1}, {8, 15, 40, 3}, {64, 16, 16, 4}, {64, 541, 560, 3},
			{12, 100, 129, 7}, {64, 640, 640, 6}, {16, 33, 48, 2}, {1, 64, 64, 3}, {3, 64, 64, 5},
			{7, 64, 64, 3}, {541, 64, 64, 3}, {6, 20, 21, 9}, {9, 24, 24, 5}, {5, 8, 9, 4},
		} {
			data := make([]uint16, (sh.rows-1)*sh.stride+sh.cols+8)
			nan := make([]uint16, len(data))
			for i := range data {
				nan[i] = 0x7e00 // an F16 NaN past every row's Cols
			}
			for row := range sh.rows {
				for c := range sh.cols {
					h := F32ToF16(float32(r.NormFloat64()))
					data[row*sh.stride+c], nan[row*sh.stride+c] = h, h
				}
			}
			w := &Matrix{Type: gguf.TypeF16, Rows: sh.rows, Cols: sh.cols, RowBytes: 2 * sh.stride, Data: unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 2*len(data))}
			wNaN := *w
			wNaN.Data = unsafe.Slice((*byte)(unsafe.Pointer(&nan[0])), 2*len(nan))
			x := randF32(r, sh.n*sh.cols+1)[:sh.n*sh.cols]
			dst := make([]float32, sh.n*sh.rows+1)
			dst[len(dst)-1] = 42 // guard
			if !dot(dst[:sh.n*sh.rows], w, x, sh.n) {
				if dotPadOn && sh.cols%mult == 0 {
					t.Fatalf("%+v: declined with a kernel", sh)
				}
				continue
			}
			if dst[len(dst)-1] != 42 {
				t.Fatalf("%+v: wrote past dst", sh)
			}
			for v := range sh.n {
				for row := range sh.rows {
					var want, mag float64
					for c := range sh.cols {
						p := float64(x[v*sh.cols+c]) * float64(F16ToF32(data[row*sh.stride+c]))
						want += p
						mag += math.Abs(p)
					}
					got := float64(dst[v*sh.rows+row])
					if math.Abs(got-want) > 1e-5*(mag+1e-30) {
						t.Fatalf("%+v: vector %d row %d: %g, want %g", sh, v, row, got, want)
					}
				}
			}
			other := make([]float32, sh.n*sh.rows)
			for v := range sh.n {
				dot(other[v*sh.rows:(v+1)*sh.rows], w, x[v*sh.cols:(v+1)*sh.cols], 1)
				for i := v * sh.rows; i < (v+1)*sh.rows; i++ {
					if math.Float32bits(other[i]) != math.Float32bits(dst[i]) {
						t.Fatalf("%+v: output %d alone: %g, in the batch %g", sh, i, other[i], dst[i])
					}
				}
			}
			for row := range sh.rows {
				one := *w
				one.Rows, one.Data = 1, w.Data[row*w.RowBytes:]
				col := make([]float32, sh.n)
				dot(col, &one, x, sh.n)
				for v := range sh.n {
					if got, want := col[v], dst[v*sh.rows+row]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%+v: row %d vector %d alone: %g, with the other rows %g", sh, row, v, got, want)
					}
				}
			}
			dot(other, &wNaN, x, sh.n)
			for i := range other {
				if math.Float32bits(other[i]) != math.Float32bits(dst[i]) {
					t.Fatalf("%+v: output %d with NaN past Cols: %g, want %g", sh, i, other[i], dst[i])
				}
			}
		}
		f32 := &Matrix{Type: gguf.TypeF32, Rows: 4, Cols: 16, RowBytes: 64, Data: make([]byte, 256)}
		if dot(make([]float32, 4), f32, make([]float32, 16), 1) {
			t.Fatal("F32 rows: not declined")
		}
	})
}

// BenchmarkDotRowsPadded times attention's values product for one KV head of
// gocode-shared at a depth of 541 (64 rows of a 640-position transposed F16 cache, the
// 3 query vectors of a group) through DotRowsPadded and through MatMul on one thread.
func BenchmarkDotRowsPadded(b *testing.B) {
	r := rand.New(rand.NewPCG(63, 64))
	const rows, cols, stride, n = 64, 541, 640, 3
	data := make([]uint16, rows*stride)
	for i := range data {
		data[i] = F32ToF16(float32(r.NormFloat64()))
	}
	w := &Matrix{Type: gguf.TypeF16, Rows: rows, Cols: cols, RowBytes: 2 * stride, Data: unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 2*len(data))}
	x := randF32(r, n*cols)
	dst := make([]float32, n*rows)
	p := NewPool(1)
	defer p.Close()
	b.Run("padded", func(b *testing.B) {
		if !DotRowsPadded(dst, w, x, n) {
			b.Skip("no DotRowsPadded kernel on this CPU")
		}
		for b.Loop() {
			DotRowsPadded(dst, w, x, n)
		}
	})
	b.Run("matmul", func(b *testing.B) {
		for b.Loop() {
			MatMul(p, dst, w, x, n)
		}
	})
}
