package kvquant

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/kernels"
)

func TestGridHalf(t *testing.T) {
	prev := float32(0)
	for j := gridMinJ; j <= gridMaxJ; j++ {
		h := kernels.F16ToF32(gridHalf(j))
		exact := math.Exp2(float64(j) / gridSteps)
		if !(h >= prev) || float64(h) < exact*(1-1e-6) || !finite32(h) {
			t.Fatalf("step %d: half %v after %v, want at least 2^(j/32) = %v", j, h, prev, exact)
		}
		if j > gridMinJ+10*gridSteps && float64(h) > exact*(1+1.0/512) {
			t.Fatalf("step %d: half %v, more than a half-float step above %v", j, h, exact)
		}
		prev = h
	}
}

// rowsSpan returns the least and largest value of each row.
func rowsSpan(x []float32, dim int) (lo, hi []float32) {
	for r := 0; r < len(x)/dim; r++ {
		lo = append(lo, slices.Min(x[r*dim:(r+1)*dim]))
		hi = append(hi, slices.Max(x[r*dim:(r+1)*dim]))
	}
	return lo, hi
}

func TestGridRangesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(rows int, scale func(r int) float64, offset func(r int) float64) ([]float32, []float32) {
		x := make([]float32, rows*8)
		for i := range x {
			x[i] = float32(offset(i/8) + scale(i/8)*rng.NormFloat64())
		}
		return rowsSpan(x, 8)
	}
	one := func(int) float64 { return 1 }
	zero := func(int) float64 { return 0 }
	cases := []struct {
		name    string
		lo, hi  []float32
		compact bool
	}{
		{"normal", nil, nil, true},
		{"offsets", nil, nil, true},
		{"wide scales", nil, nil, true},
		{"zero rows", []float32{0, -1, 0, 3}, []float32{0, 1, 0, 3.5}, true},
		{"all zero", []float32{0, 0}, []float32{0, 0}, true},
		{"no rows", nil, nil, true},
		{"no dense values", []float32{float32(math.Inf(1)), -1}, []float32{float32(math.Inf(-1)), 2}, true},
		{"constant nonzero row", []float32{-1, 2}, []float32{1, 2}, false},
		{"beyond the grid", []float32{-1, 0}, []float32{1, 1e6}, false},
		{"tiny", []float32{-1e-7, 0}, []float32{1e-7, 3e-8}, true},
	}
	cases[0].lo, cases[0].hi = random(300, one, zero)
	cases[1].lo, cases[1].hi = random(300, one, func(int) float64 { return 5 * rng.NormFloat64() })
	cases[2].lo, cases[2].hi = random(300, func(r int) float64 { return math.Exp(20*rng.Float64()) * 1e-4 }, zero)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ranges := gridRanges(tc.lo, tc.hi)
			token := make([]uint16, 2*len(ranges))
			for i, rg := range ranges {
				if tc.lo[i] <= tc.hi[i] && (rg.Normalize(tc.lo[i]) < -1 || rg.Normalize(tc.hi[i]) > 1) {
					t.Fatalf("row %d: range %+v does not hold %v..%v", i, rg, tc.lo[i], tc.hi[i])
				}
				if tc.lo[i] > tc.hi[i] && rg != (Range{}) {
					t.Fatalf("row %d without dense values: range %+v", i, rg)
				}
				token[2*i], token[2*i+1] = kernels.F32ToF16(rg.Mid), kernels.F32ToF16(rg.Half)
				if f16Round(rg.Mid) != rg.Mid || f16Round(rg.Half) != rg.Half {
					t.Fatalf("row %d: range %+v not in half precision", i, rg)
				}
			}
			base, codes, ok := EncodeTokenRanges(token)
			if ok != tc.compact {
				t.Fatalf("compact %v, want %v", ok, tc.compact)
			}
			if !ok {
				return
			}
			if len(codes) != 2*len(ranges) {
				t.Fatalf("%d range bytes for %d rows", len(codes), len(ranges))
			}
			got, err := DecodeTokenRanges(base, codes)
			if err != nil || !slices.Equal(got, token) {
				t.Fatalf("decoded %v, %v; want %v", got[:min(8, len(got))], err, token[:min(8, len(token))])
			}
		})
	}
}

// TestGridRangeTight checks that a grid range is hardly wider than the row: Half within a
// grid step and a Mid step of the half-width, for rows centred within their spread.
func TestGridRangeTight(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var sum float64
	const n = 2000
	for range n {
		need := float32(math.Exp(2 * rng.NormFloat64()))
		center := need * float32(rng.Float64()-0.5)
		lo, hi := center-need, center+need
		r, _, ok := gridRange(lo, hi, gridMinJ)
		if !ok {
			t.Fatalf("no grid range for %v..%v", lo, hi)
		}
		ratio := float64(r.Half / ((hi - lo) / 2))
		if ratio > math.Exp2(1.0/gridSteps)*(1+2.0/gridMid) {
			t.Fatalf("%v..%v: half %v, %.4f times the half-width", lo, hi, r.Half, ratio)
		}
		sum += ratio
	}
	if mean := sum / n; mean > 1.03 {
		t.Errorf("grid ranges are %.4f times the half-width on average", mean)
	}
}

func TestDecodeTokenRangesCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		base  int
		codes []byte
	}{
		{"odd", 0, []byte{1}},
		{"mid with zero half", 0, []byte{0, 3}},
		{"below the grid", gridMinJ - 10, []byte{1, 0}},
		{"above the grid", gridMaxJ, []byte{1, 0}},
		{"mid -128", 0, []byte{1, 0x80}},
	} {
		if _, err := DecodeTokenRanges(tc.base, tc.codes); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v, want ErrCorrupt", tc.name, err)
		}
	}
}

// outlierBlocks builds OutStart and OutIndex for sorted elements of rows of dim.
func outlierBlocks(elems []int, n, dim int) ([]uint32, []uint16) {
	br := BlockRows(dim)
	blocks := (n + br - 1) / br
	start := make([]uint32, blocks+1)
	var index []uint16
	k := 0
	for b := range blocks {
		start[b] = uint32(k)
		for k < len(elems) && elems[k] < (b+1)*br*dim {
			index = append(index, uint16(elems[k]-b*br*dim))
			k++
		}
	}
	start[blocks] = uint32(k)
	return start, index
}

func TestOutliersRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	randomElems := func(total int, p float64) []int {
		var e []int
		for i := range total {
			if rng.Float64() < p {
				e = append(e, i)
			}
		}
		return e
	}
	cases := []struct {
		name     string
		n, dim   int
		elems    []int
		maxBytes int
	}{
		{"none", 100, 64, nil, 0},
		{"no rows", 0, 64, nil, 0},
		{"first and last", 100, 64, []int{0, 6399}, 2 + 6399/255},
		{"a row of them", 10, 64, []int{64, 65, 66, 67, 68, 69, 70, 71}, 8},
		{"gaps around 255", 40, 64, []int{254, 509, 765, 1020, 1276, 2041}, 12},
		{"one percent", 3000, 64, randomElems(3000*64, 0.01), 0},
		{"dense", 2100, 64, randomElems(2100*64, 0.5), 0},
		{"odd dimension", 2000, 100, randomElems(2000*100, 0.02), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start, index := outlierBlocks(tc.elems, tc.n, tc.dim)
			gaps := EncodeOutliers(start, index, tc.dim)
			if tc.maxBytes > 0 && len(gaps) > tc.maxBytes {
				t.Errorf("%d gap bytes for %d outliers, want at most %d", len(gaps), len(tc.elems), tc.maxBytes)
			}
			if len(tc.elems) > 1000 && float64(len(gaps)) > 1.15*float64(len(tc.elems)) {
				t.Errorf("%d gap bytes for %d outliers", len(gaps), len(tc.elems))
			}
			s, ix, err := DecodeOutliers(gaps, tc.n, tc.dim, len(tc.elems))
			if err != nil || !slices.Equal(s, start) || !slices.Equal(ix, index) {
				t.Fatalf("decoded %v %v, %v; want %v %v", s, ix[:min(8, len(ix))], err, start, index[:min(8, len(index))])
			}
		})
	}
}

func TestDecodeOutliersCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name         string
		gaps         []byte
		n, dim, want int
	}{
		{"trailing skip", []byte{3, 255}, 10, 64, 1},
		{"too few", []byte{3}, 10, 64, 2},
		{"too many", []byte{3, 4}, 10, 64, 1},
		{"past the rows", []byte{255, 255, 200}, 10, 64, 1},
		{"bad dimension", nil, 10, 0, 0},
		{"negative count", nil, 10, 64, -1},
	} {
		if _, _, err := DecodeOutliers(tc.gaps, tc.n, tc.dim, tc.want); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v, want ErrCorrupt", tc.name, err)
		}
	}
}

// TestStoredBytes checks the stored size of quantized values: 2 bytes of ranges a row,
// about 3 bytes an outlier.
func TestStoredBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, dim = 2000, 64
	x := make([]float32, n*dim)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	typ, err := NormalFloat(3)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Quantize(x, dim, Params{Type: typ, Axis: PerToken, Outliers: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	gaps := len(EncodeOutliers(r.OutStart, r.OutIndex, dim))
	want := len(r.Codes) + 2*n + gaps + 2*r.Outliers() + 4*len(r.Levels)
	if got := r.storedBytes(); got != want {
		t.Errorf("stored bytes %d, want %d", got, want)
	}
	if bits := float64(8*r.storedBytes()) / (n * dim); bits > 3+0.25+0.3 {
		t.Errorf("%.3f bits per element", bits)
	}
}
