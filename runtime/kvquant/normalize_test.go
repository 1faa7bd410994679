package kvquant

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
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
