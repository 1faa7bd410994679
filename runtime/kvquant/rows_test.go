package kvquant

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/kernels"
)

// testTypes returns every datatype family at every width, and a Q-Norm'd one.
func testTypes(t testing.TB) map[string]Datatype {
	t.Helper()
	out := map[string]Datatype{}
	for bits := MinBits; bits <= MaxBits; bits++ {
		u, err := Uniform(bits)
		if err != nil {
			t.Fatal(err)
		}
		nf, err := NormalFloat(bits)
		if err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("int%d", bits)] = u
		out[fmt.Sprintf("nf%d", bits)] = nf
	}
	nf2 := out["nf2"]
	out["nf2-qnorm"] = nf2.WithQNorm([]float32{-0.3, -0.2, 0.1, 0.25, 0.9})
	return out
}

// testRoPE is a RoPE table for heads of dim values (theta 10000) over n positions.
func testRoPE(t testing.TB, dim, n int, neox bool) *RoPE {
	t.Helper()
	freq := make([]float64, dim/2)
	for i := range freq {
		freq[i] = math.Pow(10000, -float64(2*i)/float64(dim))
	}
	r, err := NewRoPE(dim, neox, freq, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// shuffledPositions returns n distinct positions below 2n in random order (as a tree
// orders a context's rows).
func shuffledPositions(rng *rand.Rand, n int) []int32 {
	p := make([]int32, 2*n)
	for i := range p {
		p[i] = int32(i)
	}
	rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p[:n]
}

type rowsCase struct {
	name      string
	typ       string
	axis      Axis
	rows, dim int
	frac      float64
	rope      bool
}

func rowsCases() []rowsCase {
	var cs []rowsCase
	for _, typ := range []string{"int2", "nf3", "int3", "nf4", "nf2-qnorm"} {
		for _, axis := range []Axis{PerChannel, PerToken} {
			for _, frac := range []float64{0, 0.01, 0.1} {
				cs = append(cs, rowsCase{typ: typ, axis: axis, rows: 300, dim: 256, frac: frac, rope: axis == PerChannel})
			}
		}
	}
	cs = append(cs,
		rowsCase{typ: "nf3", axis: PerChannel, rows: 70, dim: 10, frac: 0.05, rope: true},
		rowsCase{typ: "nf3", axis: PerChannel, rows: 1100, dim: 64, frac: 0.05, rope: true},
		rowsCase{typ: "int4", axis: PerChannel, rows: 90, dim: 64, frac: 0.2, rope: true},
		rowsCase{typ: "int4", axis: PerToken, rows: 33, dim: 7, frac: 0.05},
		rowsCase{typ: "nf3", axis: PerChannel, rows: 1, dim: 64, frac: 0.01},
	)
	for i := range cs {
		c := &cs[i]
		c.name = fmt.Sprintf("%s/%v/%dx%d/%g/rope=%v", c.typ, c.axis, c.rows, c.dim, c.frac, c.rope)
	}
	return cs
}

// quantizeCase quantizes random rows for c; it returns the input, the rows, and the
// reference decoding of every row without RoPE.
func quantizeCase(t *testing.T, rng *rand.Rand, types map[string]Datatype, c rowsCase) ([]float32, *Rows) {
	t.Helper()
	x := randRows(rng, c.rows, c.dim)
	p := Params{Type: types[c.typ], Axis: c.axis, Outliers: c.frac}
	if c.rope {
		p.Pos = shuffledPositions(rng, c.rows)
		p.RoPE = testRoPE(t, c.dim, 2*c.rows, c.dim >= 128) // NeoX pairs for long rows, adjacent ones for short
	}
	r, err := Quantize(x, c.dim, p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != c.rows {
		t.Fatalf("%d rows, want %d", r.Len(), c.rows)
	}
	return x, r
}

func TestQuantizeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	types := testTypes(t)
	for _, c := range rowsCases() {
		t.Run(c.name, func(t *testing.T) {
			x, r := quantizeCase(t, rng, types, c)
			ranges, out, err := Ranges(x, c.dim, c.axis, c.frac)
			if err != nil {
				t.Fatal(err)
			}
			bound := types[c.typ].Bound()
			// Decode without rotation: the stored values.
			plain := *r
			plain.Pos, plain.RoPE = nil, nil
			got := make([]float32, len(x))
			plain.dequantizeRef(got, 0, c.rows)
			outliers := 0
			for i, v := range x {
				if out[i] {
					outliers++
					if want := f16Round(v); got[i] != want {
						t.Fatalf("outlier %d: %v, want %v exactly", i, got[i], want)
					}
					continue
				}
				rg := c.axis.Of(ranges, c.dim, i)
				if e := math.Abs(float64(got[i] - v)); e > float64(bound*rg.Half)*(1+1e-5)+1e-6 {
					t.Fatalf("value %d: %v for %v, error %v above the bound %v·%v", i, got[i], v, e, bound, rg.Half)
				}
			}
			if outliers != r.Outliers() {
				t.Errorf("%d outliers stored, %d flagged", r.Outliers(), outliers)
			}
			if c.rope {
				rot := make([]float32, len(x))
				r.dequantizeRef(rot, 0, c.rows)
				for i := range c.rows {
					want := slices.Clone(got[i*c.dim : (i+1)*c.dim])
					r.RoPE.Rotate(want, int(r.Pos[i]))
					if !slices.Equal(want, rot[i*c.dim:(i+1)*c.dim]) {
						t.Fatalf("row %d: rotated decoding differs", i)
					}
				}
			}
		})
	}
}

func TestQuantizeGivenRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	nf3, _ := NormalFloat(3)
	x := randRows(rng, 400, 32)
	ranges, _, err := Ranges(x, 32, PerChannel, 0.02)
	if err != nil {
		t.Fatal(err)
	}
	all, err := Quantize(x, 32, Params{Type: nf3, Axis: PerChannel, Outliers: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	// The last 100 rows alone with the ranges of all 400 decode as they do in all.
	part, err := Quantize(x[300*32:], 32, Params{Type: nf3, Axis: PerChannel, Ranges: ranges})
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]float32, 100*32), make([]float32, 100*32)
	all.Dequantize(a, 300, 400)
	part.Dequantize(b, 0, 100)
	if !slices.Equal(a, b) {
		t.Error("rows quantized with given ranges decode differently")
	}
}

func TestDotsAccumulate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	types := testTypes(t)
	for _, c := range rowsCases() {
		t.Run(c.name, func(t *testing.T) {
			_, r := quantizeCase(t, rng, types, c)
			ref := make([]float32, c.rows*c.dim)
			r.dequantizeRef(ref, 0, c.rows)
			// Dequantize (the fast decoding) of any range equals the reference.
			for range 4 {
				lo := rng.IntN(c.rows)
				hi := lo + rng.IntN(c.rows-lo+1)
				fast := make([]float32, (hi-lo)*c.dim)
				r.Dequantize(fast, lo, hi)
				for i, v := range fast {
					// The fast decoding rounds once per multiply-add: within a few ulps of the
					// row's largest values.
					row := (lo*c.dim + i) / c.dim
					scale := norm(ref[row*c.dim : (row+1)*c.dim])
					if w := ref[lo*c.dim+i]; math.Abs(float64(v-w)) > 1e-6*(1+scale) {
						t.Fatalf("Dequantize rows %d..%d: value %d = %v, reference %v", lo, hi, i, v, w)
					}
				}
			}
			for range 8 {
				lo := rng.IntN(c.rows)
				hi := lo + rng.IntN(c.rows-lo+1)
				q := randVec(rng, c.dim)
				got := make([]float32, hi-lo)
				r.Dots(got, q, lo, hi)
				for i := range got {
					want := dot64(q, ref[(lo+i)*c.dim:(lo+i+1)*c.dim])
					if math.Abs(float64(got[i])-want) > 1e-4*(1+math.Abs(want))+1e-4*norm(q)*norm(ref[(lo+i)*c.dim:(lo+i+1)*c.dim]) {
						t.Fatalf("Dots rows %d..%d: row %d: %v, want %v", lo, hi, lo+i, got[i], want)
					}
				}
				w := randVec(rng, hi-lo)
				out := randVec(rng, c.dim)
				want := make([]float64, c.dim)
				for j := range want {
					want[j] = float64(out[j])
					for i := range w {
						want[j] += float64(w[i]) * float64(ref[(lo+i)*c.dim+j])
					}
				}
				r.Accumulate(out, w, lo, hi)
				for j := range out {
					if math.Abs(float64(out[j])-want[j]) > 1e-4*(1+math.Abs(want[j]))*float64(1+hi-lo) {
						t.Fatalf("Accumulate rows %d..%d: channel %d: %v, want %v", lo, hi, j, out[j], want[j])
					}
				}
			}
		})
	}
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func norm(a []float32) float64 { return math.Sqrt(dot64(a, a)) }

func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for bits := 1; bits <= 8; bits++ {
		for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 64, 100} {
			codes := make([]uint8, n)
			for i := range codes {
				codes[i] = uint8(rng.IntN(1 << bits))
			}
			buf := make([]byte, PackedLen(n, bits))
			Pack(buf, codes, bits)
			got := make([]uint8, n)
			Unpack(got, buf, bits)
			if !slices.Equal(got, codes) {
				t.Fatalf("%d bits, %d codes: unpacked %v, packed %v", bits, n, got, codes)
			}
			ref := make([]uint8, n)
			unpackRef(ref, buf, bits)
			if !slices.Equal(ref, codes) {
				t.Fatalf("%d bits, %d codes: reference unpacked %v", bits, n, ref)
			}
			if n*bits%8 != 0 && buf[len(buf)-1]>>(n*bits%8) != 0 {
				t.Fatalf("%d bits, %d codes: padding bits set", bits, n)
			}
		}
	}
	// 3-bit codes straddle bytes: 0b111 at code 2 covers bits 6..8.
	buf := make([]byte, 2)
	Pack(buf, []uint8{0, 0, 7}, 3)
	if buf[0] != 0xC0 || buf[1] != 0x01 {
		t.Errorf("packed %08b %08b, want 11000000 00000001", buf[0], buf[1])
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add([]byte{0x12, 0x34, 0x56, 0x78}, uint8(3))
	f.Add([]byte{0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, src []byte, b uint8) {
		bits := int(b%8) + 1
		n := len(src) * 8 / bits
		got := make([]uint8, n)
		Unpack(got, src, bits)
		ref := make([]uint8, n)
		unpackRef(ref, src, bits)
		if !slices.Equal(got, ref) {
			t.Fatalf("%d bits: %v, reference %v", bits, got, ref)
		}
		// Repacking gives the input back, up to the unused tail bits.
		buf := make([]byte, PackedLen(n, bits))
		Pack(buf, got, bits)
		for i := range buf {
			mask := byte(0xff)
			if i == len(buf)-1 && n*bits%8 != 0 {
				mask = byte(1)<<(n*bits%8) - 1
			}
			if buf[i] != src[i]&mask {
				t.Fatalf("%d bits: repacked byte %d %08b, input %08b", bits, i, buf[i], src[i])
			}
		}
	})
}

func TestInitCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	nf3, _ := NormalFloat(3)
	x := randRows(rng, 40, 16)
	good := func(axis Axis, rope bool) *Rows {
		p := Params{Type: nf3, Axis: axis, Outliers: 0.1}
		if rope {
			p.Pos = shuffledPositions(rng, 40)
			p.RoPE = testRoPE(t, 16, 80, false)
		}
		r, err := Quantize(x, 16, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		axis   Axis
		break_ func(r *Rows)
	}{
		{"bits", PerChannel, func(r *Rows) { r.Bits = 5 }},
		{"dim", PerChannel, func(r *Rows) { r.Dim = 0 }},
		{"levels", PerChannel, func(r *Rows) { r.Levels = r.Levels[:4] }},
		{"nan level", PerChannel, func(r *Rows) { r.Levels = []float32{0, 0, 0, 0, 0, 0, 0, float32(math.NaN())} }},
		{"codes", PerChannel, func(r *Rows) { r.Codes = r.Codes[:len(r.Codes)-1] }},
		{"channel ranges", PerChannel, func(r *Rows) { r.Channel = r.Channel[:3] }},
		{"negative half", PerChannel, func(r *Rows) { r.Channel[2].Half = -1 }},
		{"token ranges", PerToken, func(r *Rows) { r.Token = r.Token[:10] }},
		{"inf token", PerToken, func(r *Rows) { r.Token[3] = 0x7c00 }},
		{"axis", PerToken, func(r *Rows) { r.Axis = 7 }},
		{"blocks", PerChannel, func(r *Rows) { r.OutStart = append(r.OutStart, r.OutStart[len(r.OutStart)-1]) }},
		{"block end", PerChannel, func(r *Rows) { r.OutStart[len(r.OutStart)-1]-- }},
		{"values", PerChannel, func(r *Rows) { r.OutValue = r.OutValue[1:] }},
		{"order", PerChannel, func(r *Rows) { r.OutIndex[0], r.OutIndex[1] = r.OutIndex[1], r.OutIndex[0] }},
		{"index range", PerChannel, func(r *Rows) { r.OutIndex[len(r.OutIndex)-1] = 40 * 16 }},
		{"nan outlier", PerChannel, func(r *Rows) { r.OutValue[0] = 0x7e00 }},
		{"positions", PerChannel, func(r *Rows) { r.Pos = r.Pos[1:] }},
		{"position range", PerChannel, func(r *Rows) { r.Pos[5] = 80 }},
		{"no rope", PerChannel, func(r *Rows) { r.RoPE = nil }},
	} {
		r := good(tc.axis, tc.axis == PerChannel)
		if r.Outliers() < 2 {
			t.Fatalf("%d outliers", r.Outliers())
		}
		tc.break_(r)
		if err := r.Init(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Init = %v, want ErrCorrupt", tc.name, err)
		}
	}
}

func TestRoPEMatchesKernels(t *testing.T) {
	for _, neox := range []bool{false, true} {
		r := testRoPE(t, 16, 50, neox)
		k := kernels.NewRoPE(16, 10000, 1, neox)
		cos, sin := make([]float32, 8), make([]float32, 8)
		for _, p := range []int{0, 1, 17, 49} {
			x := randVec(rand.New(rand.NewPCG(uint64(p), 1)), 16)
			y := slices.Clone(x)
			r.Rotate(x, p)
			k.Angles(cos, sin, p)
			k.Rotate(y, cos, sin)
			for i := range x {
				if math.Abs(float64(x[i]-y[i])) > 1e-6*(1+math.Abs(float64(y[i]))) {
					t.Fatalf("neox %v position %d: %v, kernels %v", neox, p, x, y)
				}
			}
		}
	}
}
