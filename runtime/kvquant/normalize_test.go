package kvquant

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/kernels"
)

// randRows returns rows × dim values: normal noise with per-channel scales and a few
// large entries, like keys with outlier channels.
func randRows(rng *rand.Rand, rows, dim int) []float32 {
	x := make([]float32, rows*dim)
	for i := range x {
		c := i % dim
		x[i] = float32(rng.NormFloat64() * (0.5 + float64(c%5)))
		if rng.IntN(200) == 0 {
			x[i] *= 20
		}
	}
	return x
}

func TestRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		axis       Axis
		rows, dim  int
		frac       float64
		wantOutlie int
	}{
		{PerChannel, 300, 16, 0.01, 2 * 2 * 16}, // round(0.005·300) = 2 per end per channel
		{PerChannel, 50, 8, 0, 0},
		{PerToken, 300, 16, 0.01, 2 * 24}, // round(0.005·4800) = 24 per end
		{PerToken, 7, 64, 0.01, 2 * 2},
		{PerToken, 40, 8, 0, 0},
	} {
		x := randRows(rng, tc.rows, tc.dim)
		ranges, out, err := Ranges(x, tc.dim, tc.axis, tc.frac)
		if err != nil {
			t.Fatal(err)
		}
		wantRanges := tc.dim
		if tc.axis == PerToken {
			wantRanges = tc.rows
		}
		if len(ranges) != wantRanges || len(out) != len(x) {
			t.Fatalf("%v: %d ranges, %d flags", tc.axis, len(ranges), len(out))
		}
		n := 0
		for i, v := range x {
			r := tc.axis.Of(ranges, tc.dim, i)
			u := r.Normalize(v)
			if out[i] {
				n++
				if math.Abs(float64(u)) <= 1 {
					t.Errorf("%v: outlier %d normalizes to %v", tc.axis, i, u)
				}
			} else if math.Abs(float64(u)) > 1 {
				t.Errorf("%v: dense value %d normalizes to %v", tc.axis, i, u)
			}
		}
		if n != tc.wantOutlie {
			t.Errorf("%v %dx%d frac %v: %d outliers, want %d", tc.axis, tc.rows, tc.dim, tc.frac, n, tc.wantOutlie)
		}
		if tc.axis == PerToken {
			for _, r := range ranges {
				if r.Mid != f16Round(r.Mid) || r.Half != f16Round(r.Half) {
					t.Fatalf("per-token range %+v is not half precision", r)
				}
			}
		}
	}
}

func TestRangesTies(t *testing.T) {
	// Equal values at the cut stay dense: the range reaches them.
	x := []float32{5, 5, 5, 1, 2, 3, -4, -4}
	ranges, out, err := Ranges(x, 1, PerChannel, 0.25) // one per end
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o {
			t.Errorf("value %d (%v) marked an outlier", i, x[i])
		}
	}
	if r := ranges[0]; r.Mid != 0.5 || r.Half != 4.5 {
		t.Errorf("range %+v, want mid 0.5 half 4.5", r)
	}
	// Per token, ties go to the lower index.
	x = []float32{1, 1, 0, 0, 1, 1, 0, 0}
	_, out, err = Ranges(x, 4, PerToken, 0.25) // one per end
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, false, false, false, false, false}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("outliers %v, want %v", out, want)
		}
	}
}

func TestRangesInvalid(t *testing.T) {
	for _, tc := range []struct {
		x    []float32
		dim  int
		frac float64
	}{
		{[]float32{1, 2, 3}, 2, 0},
		{[]float32{1, 2}, 0, 0},
		{[]float32{1, 2}, 2, 0.5},
		{[]float32{1, 2}, 2, -0.1},
		{[]float32{1, float32(math.Inf(1))}, 2, 0},
	} {
		if _, _, err := Ranges(tc.x, tc.dim, PerToken, tc.frac); !errors.Is(err, ErrInvalid) {
			t.Errorf("Ranges(%v, %d, %v) = %v, want ErrInvalid", tc.x, tc.dim, tc.frac, err)
		}
	}
}

func TestClipRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	types := testTypes(t)
	for _, tc := range []struct {
		typ       string
		axis      Axis
		rows, dim int
		frac      float64
		weighted  bool
	}{
		{"int2", PerChannel, 300, 16, 0.01, false},
		{"nf3", PerChannel, 500, 8, 0.01, true},
		{"nf2-qnorm", PerChannel, 200, 8, 0, true},
		{"int3", PerToken, 200, 64, 0.01, false},
		{"nf2", PerToken, 100, 64, 0.01, true},
		{"nf4", PerToken, 50, 16, 0, true},
	} {
		name := fmt.Sprintf("%s/%v/%dx%d/%g/weighted=%v", tc.typ, tc.axis, tc.rows, tc.dim, tc.frac, tc.weighted)
		t.Run(name, func(t *testing.T) {
			typ := types[tc.typ]
			x := randRows(rng, tc.rows, tc.dim)
			var w []float32
			if tc.weighted {
				w = make([]float32, len(x))
				for i := range w {
					w[i] = float32(rng.ExpFloat64())
				}
			}
			ranges, out, err := Ranges(x, tc.dim, tc.axis, tc.frac)
			if err != nil {
				t.Fatal(err)
			}
			clipped, err := ClipRanges(x, tc.dim, tc.axis, ranges, out, typ, w)
			if err != nil {
				t.Fatal(err)
			}
			// Per vector, the clipped range's error is at most the min-max range's.
			vecErr := func(rs []Range) []float64 {
				e := make([]float64, len(rs))
				for i, v := range x {
					if out[i] {
						continue
					}
					v0 := i % tc.dim
					if tc.axis == PerToken {
						v0 = i / tc.dim
					}
					r := rs[v0]
					d := float64(v - r.Restore(typ.Levels[typ.Code(r.Normalize(v))]))
					wi := 1.0
					if w != nil {
						wi = float64(w[i])
					}
					e[v0] += wi * d * d
				}
				return e
			}
			before, after := vecErr(ranges), vecErr(clipped)
			var sb, sa float64
			narrowed := 0
			for v := range before {
				if after[v] > before[v] {
					t.Fatalf("vector %d: error %v after clipping, %v before", v, after[v], before[v])
				}
				if clipped[v] != ranges[v] {
					narrowed++
					if after[v] == before[v] {
						t.Fatalf("vector %d: range changed from %+v to %+v without lowering the error", v, ranges[v], clipped[v])
					}
				}
				sb, sa = sb+before[v], sa+after[v]
			}
			if narrowed == 0 || !(sa < sb) {
				t.Errorf("no vector narrowed (error %v, min-max %v)", sa, sb)
			}
			if tc.axis == PerToken {
				tok := make([]uint16, 2*len(clipped))
				for i, r := range clipped {
					tok[2*i], tok[2*i+1] = kernels.F32ToF16(r.Mid), kernels.F32ToF16(r.Half)
					if f16Round(r.Mid) != r.Mid || f16Round(r.Half) != r.Half {
						t.Fatalf("row %d: range %+v is not in half precision", i, r)
					}
				}
				if _, _, ok := EncodeTokenRanges(tok); !ok {
					t.Fatal("clipped per-token ranges are off the stored grid")
				}
			}
			// Quantize with the clipped ranges and the outlier flags: the same outliers,
			// exact; dense values clamp into the range and decode within the datatype's
			// bound of their clamped value.
			r, err := Quantize(x, tc.dim, Params{Type: typ, Axis: tc.axis, Ranges: clipped, Outlier: out})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, len(x))
			r.Dequantize(got, 0, tc.rows)
			outliers := 0
			for i, v := range x {
				if out[i] {
					outliers++
					if got[i] != f16Round(v) {
						t.Fatalf("outlier %d: %v, want %v", i, got[i], f16Round(v))
					}
					continue
				}
				rg := tc.axis.Of(clipped, tc.dim, i)
				u := rg.Normalize(v)
				clamped := rg.Restore(min(1, max(-1, u)))
				if e := math.Abs(float64(got[i] - clamped)); e > float64(typ.Bound()*rg.Half)*(1+1e-5)+1e-6 {
					t.Fatalf("value %d: %v for %v (clamped %v), error %v above the bound %v·%v", i, got[i], v, clamped, e, typ.Bound(), rg.Half)
				}
			}
			if outliers != r.Outliers() {
				t.Errorf("%d outliers stored, %d flagged", r.Outliers(), outliers)
			}
		})
	}
}

func TestClipRangesInvalid(t *testing.T) {
	nf3, _ := NormalFloat(3)
	x := []float32{1, 2, 3, 4, 5, 6}
	ranges, out, err := Ranges(x, 2, PerChannel, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		axis   Axis
		ranges []Range
		out    []bool
		w      []float32
		typ    Datatype
	}{
		{"ranges", PerChannel, ranges[:1], out, nil, nf3},
		{"token ranges", PerToken, ranges, out, nil, nf3},
		{"flags", PerChannel, ranges, out[:5], nil, nf3},
		{"weights", PerChannel, ranges, out, []float32{1}, nf3},
		{"axis", Axis(7), ranges, out, nil, nf3},
		{"datatype", PerChannel, ranges, out, nil, Datatype{}},
	} {
		if _, err := ClipRanges(x, 2, tc.axis, tc.ranges, tc.out, tc.typ, tc.w); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := Quantize(x, 2, Params{Type: nf3, Axis: PerChannel, Outlier: out}); !errors.Is(err, ErrInvalid) {
		t.Errorf("outlier flags without ranges: %v, want ErrInvalid", err)
	}
	if _, err := Quantize(x, 2, Params{Type: nf3, Axis: PerChannel, Ranges: ranges, Outlier: out[:3]}); !errors.Is(err, ErrInvalid) {
		t.Errorf("short outlier flags: %v, want ErrInvalid", err)
	}
}
