package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
)

// oddSizes are vector lengths that hit every kernel's main loop, its tail loop and the
// Go remainder.
var oddSizes = []int{0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 384, 1023}

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// withPoison returns a copy of v whose backing array continues with poison values, so
// a kernel that reads past len(v) changes its result.
func withPoison(v []float32, poison float32) []float32 {
	b := make([]float32, len(v)+64)
	copy(b, v)
	for i := len(v); i < len(b); i++ {
		b[i] = poison
	}
	return b[:len(v)]
}

// bytesWithPoison is withPoison for encoded weights: 0x7f bytes are NaN as halves and
// 3.4e38 as float32.
func bytesWithPoison(v []byte) []byte {
	b := make([]byte, len(v)+256)
	copy(b, v)
	for i := len(v); i < len(b); i++ {
		b[i] = 0x7f
	}
	return b[:len(v)]
}

// closeTo reports whether got is within rel of want, relative to scale (the sum of
// the magnitudes of the terms, so cancellation does not make the bound meaningless).
func closeTo(got, want, scale float32, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(scale)+1e-30
}

func TestF16Conversions(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		// Every half widens exactly; every non-NaN half survives the round trip.
		src := make([]uint16, 1<<16)
		for i := range src {
			src[i] = uint16(i)
		}
		dst := make([]float32, len(src)+1)
		dst[len(src)] = 42
		F16ToF32Slice(dst[:len(src)], src)
		if dst[len(src)] != 42 {
			t.Fatal("F16ToF32Slice wrote past len(src)")
		}
		back := make([]uint16, len(src))
		F32ToF16Slice(back, dst[:len(src)])
		for i, h := range src {
			if got, want := math.Float32bits(dst[i]), math.Float32bits(F16ToF32(h)); got != want {
				t.Fatalf("F16ToF32Slice(%#04x) = %#08x, F16ToF32 %#08x", h, got, want)
			}
			if back[i] != F32ToF16(dst[i]) {
				t.Fatalf("F32ToF16Slice(%v) = %#04x, F32ToF16 %#04x", dst[i], back[i], F32ToF16(dst[i]))
			}
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				if back[i] != h {
					t.Fatalf("round trip of %#04x gave %#04x", h, back[i])
				}
			}
		}
		// Random float32 bit patterns (every exponent, NaNs included) narrow exactly as
		// F32ToF16 does, for every length class.
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range append(oddSizes, 4099) {
			f := make([]float32, n)
			for i := range f {
				f[i] = math.Float32frombits(r.Uint32())
				if i%3 == 0 { // values near the half range, where rounding matters
					f[i] = float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(40)-25)))
				}
			}
			h := make([]uint16, n+1)
			h[n] = 0xbeef
			F32ToF16Slice(h[:n], f)
			for i := range f {
				if h[i] != F32ToF16(f[i]) {
					t.Fatalf("n=%d: F32ToF16Slice(%#08x) = %#04x, F32ToF16 %#04x", n, math.Float32bits(f[i]), h[i], F32ToF16(f[i]))
				}
			}
			if h[n] != 0xbeef {
				t.Fatalf("n=%d: F32ToF16Slice wrote past the end", n)
			}
		}
	})
}

// TestF32ToF16Rounding checks the reference narrowing against float64 arithmetic:
// the result is the nearest half, ties to even.
func TestF32ToF16Rounding(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		f := float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(44)-28)))
		h := F32ToF16(f)
		got := float64(F16ToF32(h))
		if math.IsInf(got, 0) {
			if math.Abs(float64(f)) < 65520 {
				t.Fatalf("%v narrowed to Inf", f)
			}
			continue
		}
		// Neighbours of h in the direction of f: none may be closer.
		for _, nb := range []uint16{h + 1, h - 1} {
			if nb&0x7c00 == 0x7c00 || (h&0x7fff == 0 && nb == h-1) {
				continue
			}
			d0, d1 := math.Abs(got-float64(f)), math.Abs(float64(F16ToF32(nb))-float64(f))
			if d1 < d0 || (d1 == d0 && nb&1 == 0) {
				t.Fatalf("F32ToF16(%v) = %#04x (%v), but %#04x (%v) is nearer or the even tie", f, h, got, nb, F16ToF32(nb))
			}
		}
	}
}

func TestBF16Rounding(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above the tie
		{0x7f7fffff, 0x7f80}, // max float rounds to Inf
		{0xff800000, 0xff80}, // -Inf
		{0x7f800001, 0x7fc0}, // signalling NaN is quieted
		{0x80000000, 0x8000}, // -0
	}
	for _, c := range cases {
		if got := F32ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	for h := range 1 << 16 {
		f := BF16ToF32(uint16(h))
		if f == f && F32ToBF16(f) != uint16(h) {
			t.Fatalf("BF16 round trip of %#04x gave %#04x", h, F32ToBF16(f))
		}
	}
}

var floatTypes = []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16}

// TestFloatDotRows compares each level's dotRows for the plain float formats with a
// float64 dot of the dequantized rows.
func TestFloatDotRows(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, typ := range floatTypes {
			f := formats[typ]
			for _, cols := range oddSizes {
				for _, rows := range []int{0, 1, 3, 4, 5, 9} {
					w := randF32(r, rows*cols)
					x := randF32(r, cols)
					enc, err := Quantize(typ, w)
					if err != nil {
						t.Fatal(err)
					}
					deq := make([]float32, len(w))
					if err := Dequantize(typ, deq, enc); err != nil {
						t.Fatal(err)
					}
					rb, _ := typ.RowBytes(cols)
					dst := make([]float32, rows+2)
					dst[rows], dst[rows+1] = 7, 7
					f.dotRows(dst[:rows], bytesWithPoison(enc), rb, &Activation{F32: withPoison(x, nan)})
					for i := range rows {
						var want, scale float64
						for j := range cols {
							p := float64(deq[i*cols+j]) * float64(x[j])
							want += p
							scale += math.Abs(p)
						}
						if !closeTo(dst[i], float32(want), float32(scale), 1e-5) {
							t.Fatalf("%v %dx%d row %d: got %v, want %v", typ, rows, cols, i, dst[i], want)
						}
					}
					if dst[rows] != 7 || dst[rows+1] != 7 {
						t.Fatalf("%v %dx%d: dotRows wrote past dst", typ, rows, cols)
					}
				}
			}
		}
	})
}

// TestFloatDequant checks that each level's dequant decodes exactly what the reference
// decoder does.
func TestFloatDequant(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, typ := range floatTypes {
		for _, n := range oddSizes {
			src := randF32(r, n)
			enc, _ := Quantize(typ, src)
			want := make([]float32, n)
			withFeatures(t, func(t *testing.T) {
				if cpuHas == (features{}) {
					formats[typ].dequant(want, enc)
					return
				}
				got := make([]float32, n+1)
				got[n] = 3
				formats[typ].dequant(got[:n], enc)
				for i := range n {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v n=%d: element %d = %v, want %v", typ, n, i, got[i], want[i])
					}
				}
				if got[n] != 3 {
					t.Fatalf("%v n=%d: dequant wrote past dst", typ, n)
				}
			})
		}
	}
}

func TestDotAxpy(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, n := range append(oddSizes, 2048, 2051) {
			x, y := randF32(r, n), randF32(r, n+1)
			h := make([]uint16, n)
			F32ToF16Slice(h, y[:n])
			var want, wantH, scale, scaleH float64
			for i := range n {
				want += float64(x[i]) * float64(y[i])
				scale += math.Abs(float64(x[i]) * float64(y[i]))
				p := float64(x[i]) * float64(F16ToF32(h[i]))
				wantH += p
				scaleH += math.Abs(p)
			}
			if got := Dot(withPoison(x, nan), withPoison(y[:n], nan)); !closeTo(got, float32(want), float32(scale), 1e-5) {
				t.Fatalf("n=%d: Dot = %v, want %v", n, got, want)
			}
			hp := make([]uint16, n+64)
			copy(hp, h)
			for i := n; i < len(hp); i++ {
				hp[i] = 0x7fff // NaN
			}
			if got := DotF16(withPoison(x, nan), hp[:n]); !closeTo(got, float32(wantH), float32(scaleH), 1e-5) {
				t.Fatalf("n=%d: DotF16 = %v, want %v", n, got, wantH)
			}
			const alpha = 0.37
			y1 := append([]float32(nil), y...)
			Axpy(alpha, withPoison(x, nan), y1)
			y2 := append([]float32(nil), y...)
			AxpyF16(alpha, hp[:n], y2)
			for i := range n {
				if want := y[i] + alpha*x[i]; !closeTo(y1[i], want, absF(y[i])+absF(alpha*x[i]), 1e-6) {
					t.Fatalf("n=%d: Axpy element %d = %v, want %v", n, i, y1[i], want)
				}
				if want := y[i] + alpha*F16ToF32(h[i]); !closeTo(y2[i], want, absF(y[i])+absF(alpha*F16ToF32(h[i])), 1e-6) {
					t.Fatalf("n=%d: AxpyF16 element %d = %v, want %v", n, i, y2[i], want)
				}
			}
			if y1[n] != y[n] || y2[n] != y[n] {
				t.Fatalf("n=%d: Axpy wrote past len(x)", n)
			}
		}
	})
}

func absF(v float32) float32 { return float32(math.Abs(float64(v))) }

var nan = float32(math.NaN())
