package calibrate

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/kvquant"
)

// skewedRows returns rows x dim values with a few large channels and heavy tails, like
// pre-RoPE keys, and sensitivities that favour some rows and channels.
func skewedRows(rows, dim int, seed uint64) (x, fisher []float32) {
	r := rand.New(rand.NewPCG(seed, 3))
	x, fisher = make([]float32, rows*dim), make([]float32, rows*dim)
	for i := range rows {
		for c := range dim {
			v := r.NormFloat64()
			if r.IntN(10) == 0 {
				v *= 4 // heavy tail
			}
			if c%7 == 0 {
				v = 5 + 2*v // an outlier channel with an offset
			}
			x[i*dim+c] = float32(v)
			f := r.ExpFloat64()
			if i%5 == 0 {
				f *= 30
			}
			if v > 0 {
				f *= 4
			}
			fisher[i*dim+c] = float32(f * 1e-9)
		}
	}
	return x, fisher
}

// weightedError returns Σ w·(u − signpost(u))² over the dense values of s normalized as
// FitDatatype does, with the weights of opt.Weighting: the objective the fit minimizes.
func weightedError(t *testing.T, s Sample, axis kvquant.Axis, opt DatatypeOptions, dt kvquant.Datatype) float64 {
	t.Helper()
	ranges, out, err := kvquant.Ranges(s.X, s.Dim, axis, opt.Outliers)
	if err != nil {
		t.Fatal(err)
	}
	var e float64
	for i, x := range s.X {
		if out[i] {
			continue
		}
		r := axis.Of(ranges, s.Dim, i)
		u := r.Normalize(x)
		d := float64(u - dt.Signposts[dt.Code(u)])
		w := 1.0
		if opt.Weighting != Unweighted {
			w = float64(s.Fisher[i])
			if opt.Weighting == FisherScale {
				w *= float64(r.Half) * float64(r.Half)
			}
		}
		e += w * d * d
	}
	return e
}

// TestFitDatatypeBeatsBaselines checks, for both axes, every width and weighting, that the
// fitted datatype is a valid one (sorted, in [−1, 1], 2^b signposts) whose weighted error
// is below the uniform and NormalFloat datatypes' and below the other weightings' fits
// (each fit is optimal for its own weights, up to binning).
func TestFitDatatypeBeatsBaselines(t *testing.T) {
	x, fisher := skewedRows(600, 32, 1)
	s := Sample{X: x, Dim: 32, Fisher: fisher}
	for _, axis := range []kvquant.Axis{kvquant.PerChannel, kvquant.PerToken} {
		for bits := kvquant.MinBits; bits <= kvquant.MaxBits; bits++ {
			fits := map[Weighting]kvquant.Datatype{}
			for _, w := range []Weighting{FisherScale, FisherOnly, Unweighted} {
				dt, err := FitDatatype(context.Background(), []Sample{s}, axis, DatatypeOptions{Bits: bits, Weighting: w, Outliers: 0.01})
				if err != nil {
					t.Fatal(err)
				}
				if len(dt.Signposts) != 1<<bits || dt.Check() != nil || !slices.IsSorted(dt.Signposts) ||
					dt.Signposts[0] < -1 || dt.Signposts[len(dt.Signposts)-1] > 1 {
					t.Fatalf("%v %d bits %v: bad datatype %v", axis, bits, w, dt.Signposts)
				}
				fits[w] = dt
			}
			uni, _ := kvquant.Uniform(bits)
			nf, _ := kvquant.NormalFloat(bits)
			for w, dt := range fits {
				opt := DatatypeOptions{Bits: bits, Weighting: w, Outliers: 0.01}
				mine := weightedError(t, s, axis, opt, dt)
				others := map[string]kvquant.Datatype{"uniform": uni, "nf": nf}
				for w2, dt2 := range fits {
					if w2 != w {
						others[w2.String()+" fit"] = dt2
					}
				}
				for name, o := range others {
					theirs := weightedError(t, s, axis, opt, o)
					// Binning may cost the fit a hair against a fit of nearly equal
					// weights.
					if mine > theirs*1.001 {
						t.Errorf("%v %d bits, %v weights: fitted error %.4g above %s's %.4g", axis, bits, w, mine, name, theirs)
					}
				}
				t.Logf("%v %d bits %v: error %.4g (uniform %.4g, nf %.4g)", axis, bits, w, mine,
					weightedError(t, s, axis, opt, uni), weightedError(t, s, axis, opt, nf))
			}
		}
	}
}

// TestFitDatatypeReconstruction checks the fit against kvquant's own quantizer: with the
// Fisher×scale² weighting the fitted datatype gives a lower Fisher-weighted squared error
// of the dequantized values than the uniform and NormalFloat datatypes.
func TestFitDatatypeReconstruction(t *testing.T) {
	x, fisher := skewedRows(400, 16, 2)
	for _, axis := range []kvquant.Axis{kvquant.PerChannel, kvquant.PerToken} {
		for _, bits := range []int{2, 3, 4} {
			fit, err := FitDatatype(context.Background(), []Sample{{X: x, Dim: 16, Fisher: fisher}}, axis, DatatypeOptions{Bits: bits, Outliers: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			uni, _ := kvquant.Uniform(bits)
			nf, _ := kvquant.NormalFloat(bits)
			errOf := func(dt kvquant.Datatype) float64 {
				rows, err := kvquant.Quantize(x, 16, kvquant.Params{Type: dt, Axis: axis, Outliers: 0.01})
				if err != nil {
					t.Fatal(err)
				}
				got := make([]float32, len(x))
				rows.Dequantize(got, 0, rows.Len())
				var e float64
				for i := range x {
					d := float64(got[i] - x[i])
					e += float64(fisher[i]) * d * d
				}
				return e
			}
			f, u, n := errOf(fit), errOf(uni), errOf(nf)
			t.Logf("%v %d bits: Fisher-weighted error fitted %.4g, uniform %.4g, nf %.4g", axis, bits, f, u, n)
			if f > u || f > n {
				t.Errorf("%v %d bits: fitted datatype's error %.4g is not below uniform %.4g and nf %.4g", axis, bits, f, u, n)
			}
		}
	}
}

// TestFitDatatypeSymmetric checks that data symmetric about 0 (with symmetric weights)
// gives signposts symmetric about 0.
func TestFitDatatypeSymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	const rows, dim = 300, 8
	x := make([]float32, 0, 2*rows*dim)
	for range rows * dim {
		x = append(x, float32(r.NormFloat64()))
	}
	// Mirror every row, so each channel and each row's mirror is symmetric, and pin each
	// channel's ends at ±5 so the ranges are centred on 0.
	for i := range rows * dim {
		x = append(x, -x[i])
	}
	for c := range dim {
		x[c], x[rows*dim+c] = 5, -5
	}
	for _, bits := range []int{2, 3, 4} {
		dt, err := FitDatatype(context.Background(), []Sample{{X: x, Dim: dim}}, kvquant.PerChannel, DatatypeOptions{Bits: bits, Weighting: Unweighted})
		if err != nil {
			t.Fatal(err)
		}
		s := dt.Signposts
		for i := range s {
			if d := math.Abs(float64(s[i] + s[len(s)-1-i])); d > 1e-5 {
				t.Errorf("%d bits: signposts %v are not symmetric (%d: %.2g)", bits, s, i, d)
				break
			}
		}
	}
}

// TestFitDatatypeDeterministic checks that a fit is a function of its input, and that
// FitDatatype does not modify the samples.
func TestFitDatatypeDeterministic(t *testing.T) {
	x, fisher := skewedRows(300, 16, 5)
	keep := slices.Clone(x)
	samples, err := HeadSamples(x, fisher, nil, 2, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, err := FitDatatype(context.Background(), samples, kvquant.PerToken, DatatypeOptions{Bits: 3, Outliers: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	b, err := FitDatatype(context.Background(), samples, kvquant.PerToken, DatatypeOptions{Bits: 3, Outliers: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Signposts, b.Signposts) {
		t.Errorf("two fits differ: %v and %v", a.Signposts, b.Signposts)
	}
	if !slices.Equal(x, keep) {
		t.Error("the fit modified its input")
	}
	// One histogram fits every width as FitDatatype does.
	h, err := NewHistogram(context.Background(), samples, kvquant.PerToken, DatatypeOptions{Outliers: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	for bits := kvquant.MinBits; bits <= kvquant.MaxBits; bits++ {
		want, err := FitDatatype(context.Background(), samples, kvquant.PerToken, DatatypeOptions{Bits: bits, Outliers: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.Fit(context.Background(), bits)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Signposts, want.Signposts) {
			t.Errorf("%d bits: Histogram.Fit %v, FitDatatype %v", bits, got.Signposts, want.Signposts)
		}
	}
	if _, err := h.Fit(context.Background(), 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Fit(1 bit): error %v, want ErrInvalid", err)
	}
}

// TestFitDatatypeFewValues checks that data with fewer distinct values than signposts
// still gives a full datatype containing them.
func TestFitDatatypeFewValues(t *testing.T) {
	x := []float32{-1, 1, -1, 1, 0, 0.5, 0, 0.5} // rows of 2: channel 0 in {-1, 0}, channel 1 in {0.5, 1}
	dt, err := FitDatatype(context.Background(), []Sample{{X: x, Dim: 2}}, kvquant.PerChannel, DatatypeOptions{Bits: 3, Weighting: Unweighted})
	if err != nil {
		t.Fatal(err)
	}
	if len(dt.Signposts) != 8 || dt.Check() != nil {
		t.Fatalf("datatype %v", dt.Signposts)
	}
	for _, want := range []float32{-1, 1} {
		if !slices.Contains(dt.Signposts, want) {
			t.Errorf("signposts %v lack %v", dt.Signposts, want)
		}
	}
}

// TestFitDatatypeChannelInputs checks the aggregate sensitivities and given channel
// ranges: per-channel sensitivities equal per-element ones repeated on every row, and
// given ranges equal to those kvquant computes give the same fit.
func TestFitDatatypeChannelInputs(t *testing.T) {
	x, _ := skewedRows(200, 8, 6)
	r := rand.New(rand.NewPCG(6, 6))
	channel := make([]float32, 8)
	for c := range channel {
		channel[c] = float32(r.ExpFloat64())
	}
	perElement := make([]float32, len(x))
	for i := range perElement {
		perElement[i] = channel[i%8]
	}
	ranges, _, err := kvquant.Ranges(x, 8, kvquant.PerChannel, 0.02)
	if err != nil {
		t.Fatal(err)
	}
	opt := DatatypeOptions{Bits: 3, Outliers: 0.02}
	var fits [][]float32
	for _, s := range []Sample{
		{X: x, Dim: 8, Fisher: perElement},
		{X: x, Dim: 8, ChannelFisher: channel},
		{X: x, Dim: 8, ChannelFisher: channel, Ranges: ranges},
	} {
		dt, err := FitDatatype(context.Background(), []Sample{s}, kvquant.PerChannel, opt)
		if err != nil {
			t.Fatal(err)
		}
		fits = append(fits, dt.Signposts)
	}
	if !slices.Equal(fits[0], fits[1]) || !slices.Equal(fits[1], fits[2]) {
		t.Errorf("fits differ: per element %v, per channel %v, given ranges %v", fits[0], fits[1], fits[2])
	}

	// Given per-token ranges: every value normalizing into [−1, 1] counts, so ranges twice
	// as wide put every value in [−0.5, 0.5].
	tokenRanges, _, err := kvquant.Ranges(x, 8, kvquant.PerToken, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tokenRanges {
		tokenRanges[i].Half *= 2
	}
	dt, err := FitDatatype(context.Background(), []Sample{{X: x, Dim: 8, Ranges: tokenRanges}}, kvquant.PerToken, DatatypeOptions{Bits: 2, Weighting: Unweighted})
	if err != nil {
		t.Fatal(err)
	}
	if s := dt.Signposts; s[0] < -0.5 || s[len(s)-1] > 0.5 {
		t.Errorf("signposts %v for values in [-0.5, 0.5]", s)
	}
}

// TestHeadSamples checks the per-head cut of a layer's token-major activations.
func TestHeadSamples(t *testing.T) {
	// 3 tokens of 2 heads of 2 channels: value = 100·token + 10·head + channel.
	var x []float32
	for tok := range 3 {
		for h := range 2 {
			for c := range 2 {
				x = append(x, float32(100*tok+10*h+c))
			}
		}
	}
	s, err := HeadSamples(x, x, []float32{1, 2, 3, 4}, 2, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float32{{100, 101, 200, 201}, {110, 111, 210, 211}}
	for h := range 2 {
		if !slices.Equal(s[h].X, want[h]) || !slices.Equal(s[h].Fisher, want[h]) || s[h].Dim != 2 {
			t.Errorf("head %d: %+v, want rows %v", h, s[h], want[h])
		}
	}
	if !slices.Equal(s[1].ChannelFisher, []float32{3, 4}) {
		t.Errorf("head 1 channel sensitivities %v, want [3 4]", s[1].ChannelFisher)
	}
	if _, err := HeadSamples(x[:5], nil, nil, 2, 2, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("ragged input: error %v, want ErrInvalid", err)
	}
}

// TestFitDatatypeErrors checks argument errors.
func TestFitDatatypeErrors(t *testing.T) {
	x, fisher := skewedRows(20, 4, 7)
	ok := Sample{X: x, Dim: 4, Fisher: fisher}
	bad := slices.Clone(fisher)
	bad[3] = -1
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		samples []Sample
		axis    kvquant.Axis
		opt     DatatypeOptions
		is      error
	}{
		{"bits", context.Background(), []Sample{ok}, kvquant.PerToken, DatatypeOptions{Bits: 5}, ErrInvalid},
		{"weighting", context.Background(), []Sample{ok}, kvquant.PerToken, DatatypeOptions{Bits: 2, Weighting: 7}, ErrInvalid},
		{"bins", context.Background(), []Sample{ok}, kvquant.PerToken, DatatypeOptions{Bits: 3, Bins: 4}, ErrInvalid},
		{"ragged", context.Background(), []Sample{{X: x[:7], Dim: 4}}, kvquant.PerToken, DatatypeOptions{Bits: 2}, ErrInvalid},
		{"fisher length", context.Background(), []Sample{{X: x, Dim: 4, Fisher: fisher[:4]}}, kvquant.PerToken, DatatypeOptions{Bits: 2}, ErrInvalid},
		{"negative fisher", context.Background(), []Sample{{X: x, Dim: 4, Fisher: bad}}, kvquant.PerToken, DatatypeOptions{Bits: 2}, ErrInvalid},
		{"ranges per token", context.Background(), []Sample{{X: x, Dim: 4, Ranges: make([]kvquant.Range, 4)}}, kvquant.PerToken, DatatypeOptions{Bits: 2}, ErrInvalid},
		{"NaN range", context.Background(), []Sample{{X: x, Dim: 4, Ranges: []kvquant.Range{{}, {}, {Mid: float32(math.NaN())}, {}}}}, kvquant.PerChannel, DatatypeOptions{Bits: 2}, ErrInvalid},
		{"zero fisher", context.Background(), []Sample{{X: x, Dim: 4, Fisher: make([]float32, len(x))}}, kvquant.PerToken, DatatypeOptions{Bits: 2}, ErrNoWeight},
		{"no samples", context.Background(), nil, kvquant.PerToken, DatatypeOptions{Bits: 2}, ErrNoWeight},
		{"cancelled", cancelled, []Sample{ok}, kvquant.PerToken, DatatypeOptions{Bits: 2}, context.Canceled},
	} {
		if _, err := FitDatatype(tc.ctx, tc.samples, tc.axis, tc.opt); !errors.Is(err, tc.is) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.is)
		}
	}
}
