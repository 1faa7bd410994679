package calibrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"squeeze/kmeans"
	"squeeze/runtime/kvquant"
)

// ErrInvalid means bad arguments to a fit: a malformed Sample, sensitivities that are
// negative or not finite, or options out of range.
var ErrInvalid = errors.New("calibrate: invalid input")

// ErrNoWeight means a fit had nothing to fit: no dense value with positive weight (every
// value an outlier, every vector constant, or every sensitivity zero).
var ErrNoWeight = errors.New("calibrate: no weighted values to fit")

// Weighting says how FitDatatype weighs each normalized value in its k-means.
type Weighting int

// The weightings of KVQuant's datatype fit.
const (
	// FisherScale weighs a value by its sensitivity times the square of its range's Half,
	// so that the fit minimizes Σ F·(x − x̂)², the Fisher-weighted error of the values
	// themselves (x − x̂ = Half·(u − û)): the paper's objective, and the default.
	FisherScale Weighting = iota
	// FisherOnly weighs a value by its sensitivity alone (KVQuant's released code).
	FisherOnly
	// Unweighted weighs every value alike: plain k-means over the normalized values.
	Unweighted
)

// String returns "fisher-scale", "fisher" or "none".
func (w Weighting) String() string {
	switch w {
	case FisherScale:
		return "fisher-scale"
	case FisherOnly:
		return "fisher"
	case Unweighted:
		return "none"
	}
	return fmt.Sprintf("Weighting(%d)", int(w))
}

// DefaultBins is the number of bins FitDatatype histograms [−1, 1] into.
const DefaultBins = 1 << 14

// DatatypeOptions tunes FitDatatype and NewHistogram.
type DatatypeOptions struct {
	// Bits is the code width b: the datatype has 2^b signposts (kvquant.MinBits to
	// kvquant.MaxBits).
	Bits int
	// Weighting is how values are weighed (the zero value is FisherScale).
	Weighting Weighting
	// Outliers is the fraction of values kept exactly, as kvquant.Params.Outliers: they
	// are left out of the fit. Samples with Ranges ignore it.
	Outliers float64
	// Bins is the resolution of the histogram of normalized values the k-means runs on
	// (0: DefaultBins; at least 2^kvquant.MaxBits).
	Bins int
}

// Sample is one matrix of a layer's keys (before RoPE) or values exactly as
// kvquant.Quantize receives it (rows of Dim values, for example one KV head's rows of a
// context, without the attention sink it keeps in full precision), with the
// sensitivities of its elements.
type Sample struct {
	// X holds the rows, Dim values each.
	X   []float32
	Dim int
	// Fisher holds one sensitivity per element of X, or is nil.
	Fisher []float32
	// ChannelFisher, used when Fisher is nil, holds one sensitivity per channel (Dim
	// values) shared by every row: the aggregate form (Sensitivity.ChannelMeans) for a
	// calibration text that is not these rows. With neither, FisherScale and FisherOnly
	// weigh every value 1 (FisherScale still by Half²).
	ChannelFisher []float32
	// Ranges, if set, are the ranges the quantizer uses (kvquant.Params.Ranges): Dim of
	// them for kvquant.PerChannel, one per row for kvquant.PerToken; values normalizing
	// beyond ±1 are then the outliers. Nil computes them from X as Quantize does
	// (kvquant.Ranges with DatatypeOptions.Outliers).
	Ranges []kvquant.Range
}

// FitDatatype fits one layer's keys or values datatype, KVQuant's nuq (§3.2): the 2^Bits
// signposts in [−1, 1] that minimize the weighted squared distance of the layer's
// normalized dense values to their nearest signpost. It is NewHistogram then Fit; to fit
// several widths to the same values, call those.
func FitDatatype(ctx context.Context, samples []Sample, axis kvquant.Axis, opt DatatypeOptions) (kvquant.Datatype, error) {
	if err := checkBits(opt.Bits); err != nil {
		return kvquant.Datatype{}, err
	}
	h, err := NewHistogram(ctx, samples, axis, opt)
	if err != nil {
		return kvquant.Datatype{}, err
	}
	return h.Fit(ctx, opt.Bits)
}

func checkBits(bits int) error {
	if bits < kvquant.MinBits || bits > kvquant.MaxBits {
		return fmt.Errorf("%w: %d bits, want %d to %d", ErrInvalid, bits, kvquant.MinBits, kvquant.MaxBits)
	}
	return nil
}

// Histogram is one layer's keys or values normalized as kvquant quantizes them, outliers
// left out, and weighed: the total weight and weighted mean of the values in each of Bins
// equal bins over [−1, 1]. Binning moves a value by at most half a bin (3e-5 with
// DefaultBins) and makes a fit's cost independent of the number of values.
type Histogram struct {
	w, wu []float64 // per bin: total weight, weighted sum of the values
}

// NewHistogram normalizes every sample's values by the ranges kvquant uses along axis
// (kvquant.PerChannel for keys, kvquant.PerToken for values; the sample's Ranges if
// given, else kvquant.Ranges with opt.Outliers), leaves out the outliers and the
// values of constant vectors (decoded exactly whatever the datatype), and adds the rest
// with the weights of opt.Weighting. opt.Bits is not used. It checks ctx between samples.
// Errors wrap ErrInvalid.
func NewHistogram(ctx context.Context, samples []Sample, axis kvquant.Axis, opt DatatypeOptions) (*Histogram, error) {
	if opt.Weighting < FisherScale || opt.Weighting > Unweighted {
		return nil, fmt.Errorf("%w: weighting %v", ErrInvalid, opt.Weighting)
	}
	if axis != kvquant.PerChannel && axis != kvquant.PerToken {
		return nil, fmt.Errorf("%w: axis %d", ErrInvalid, axis)
	}
	bins := opt.Bins
	if bins == 0 {
		bins = DefaultBins
	}
	if bins < 1<<kvquant.MaxBits || bins > 1<<24 {
		return nil, fmt.Errorf("%w: %d bins, want %d to %d", ErrInvalid, bins, 1<<kvquant.MaxBits, 1<<24)
	}
	h := &Histogram{w: make([]float64, bins), wu: make([]float64, bins)}
	for i, s := range samples {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := h.add(s, axis, opt); err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
	}
	return h, nil
}

// Fit returns the datatype of 2^bits signposts that minimizes the histogram's weighted
// squared distance to the nearest signpost: the exact weighted 1-D k-means
// (kmeans.Weighted1D) of the bins, each standing for its values by their weighted mean and
// total weight. The result is deterministic. With fewer non-empty bins than signposts,
// the remaining signposts are taken from kvquant.Uniform, farthest first. Errors wrap
// ErrInvalid, or ErrNoWeight for a histogram without weight.
func (h *Histogram) Fit(ctx context.Context, bits int) (kvquant.Datatype, error) {
	if err := checkBits(bits); err != nil {
		return kvquant.Datatype{}, err
	}
	values, weights := h.points()
	if len(values) == 0 {
		return kvquant.Datatype{}, ErrNoWeight
	}
	res, err := kmeans.Weighted1D(ctx, values, weights, 1<<bits)
	if err != nil {
		return kvquant.Datatype{}, fmt.Errorf("calibrate: %w", err)
	}
	return signposts(res.Centers, bits)
}

// add puts sample s's dense values into h.
func (h *Histogram) add(s Sample, axis kvquant.Axis, opt DatatypeOptions) error {
	if s.Dim < 1 || len(s.X)%s.Dim != 0 {
		return fmt.Errorf("%w: %d values are not rows of %d", ErrInvalid, len(s.X), s.Dim)
	}
	if s.Fisher != nil && len(s.Fisher) != len(s.X) {
		return fmt.Errorf("%w: %d sensitivities for %d values", ErrInvalid, len(s.Fisher), len(s.X))
	}
	if s.Fisher == nil && s.ChannelFisher != nil && len(s.ChannelFisher) != s.Dim {
		return fmt.Errorf("%w: %d channel sensitivities for rows of %d", ErrInvalid, len(s.ChannelFisher), s.Dim)
	}
	for _, f := range [][]float32{s.Fisher, s.ChannelFisher} {
		for i, v := range f {
			if !(v >= 0) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%w: sensitivity %d is %v", ErrInvalid, i, v)
			}
		}
	}
	var ranges []kvquant.Range
	var out []bool
	switch {
	case s.Ranges != nil:
		want := s.Dim
		if axis == kvquant.PerToken {
			want = len(s.X) / s.Dim
		}
		if len(s.Ranges) != want {
			return fmt.Errorf("%w: %d ranges for %d rows of %d quantized per %v", ErrInvalid, len(s.Ranges), len(s.X)/s.Dim, s.Dim, axis)
		}
		for j, rg := range s.Ranges {
			if math.IsNaN(float64(rg.Mid)) || math.IsInf(float64(rg.Mid), 0) || !(rg.Half >= 0) || math.IsInf(float64(rg.Half), 0) {
				return fmt.Errorf("%w: range %d is %+v", ErrInvalid, j, rg)
			}
		}
		ranges = s.Ranges
	default:
		var err error
		if ranges, out, err = kvquant.Ranges(s.X, s.Dim, axis, opt.Outliers); err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
	}
	bins := len(h.w)
	for i, x := range s.X {
		if out != nil && out[i] {
			continue
		}
		r := axis.Of(ranges, s.Dim, i)
		if r.Half == 0 {
			continue // a constant vector: decoded exactly whatever the datatype
		}
		u := r.Normalize(x)
		if !(u >= -1 && u <= 1) {
			continue // outside a given range: an outlier
		}
		w := 1.0
		if opt.Weighting != Unweighted {
			switch {
			case s.Fisher != nil:
				w = float64(s.Fisher[i])
			case s.ChannelFisher != nil:
				w = float64(s.ChannelFisher[i%s.Dim])
			}
			if opt.Weighting == FisherScale {
				w *= float64(r.Half) * float64(r.Half)
			}
		}
		if w == 0 {
			continue
		}
		b := min(bins-1, int((float64(u)+1)/2*float64(bins)))
		h.w[b] += w
		h.wu[b] += w * float64(u)
	}
	return nil
}

// points returns the non-empty bins as values (their weighted means) and weights
// (normalized to sum to 1, so that tiny sensitivities stay well inside float64's range).
func (h *Histogram) points() (values, weights []float64) {
	var total float64
	for _, w := range h.w {
		total += w
	}
	if !(total > 0) || math.IsInf(total, 0) {
		return nil, nil
	}
	for b, w := range h.w {
		if w > 0 {
			values = append(values, min(1, max(-1, h.wu[b]/w)))
			weights = append(weights, w/total)
		}
	}
	return values, weights
}

// signposts turns ascending k-means centres into a datatype of 2^bits signposts, adding
// uniform signposts (farthest from the centres first) when there are too few centres.
func signposts(centers []float64, bits int) (kvquant.Datatype, error) {
	k := 1 << bits
	s := make([]float32, 0, k)
	for _, c := range centers {
		s = append(s, float32(c))
	}
	if len(s) < k {
		uni, err := kvquant.Uniform(bits)
		if err != nil {
			return kvquant.Datatype{}, err
		}
		for len(s) < k {
			best, far := float32(0), float32(-1)
			for _, u := range uni.Signposts {
				d := float32(math.Inf(1))
				for _, v := range s {
					d = min(d, float32(math.Abs(float64(u-v))))
				}
				if d > far {
					best, far = u, d
				}
			}
			s = append(s, best)
		}
		slices.Sort(s)
	}
	// Centres of distinct bins are far apart; still, keep float32 rounding from making
	// neighbours equal.
	for i := 1; i < k; i++ {
		if s[i] <= s[i-1] {
			s[i] = math.Nextafter32(s[i-1], 2)
		}
	}
	for i := k - 1; i >= 0 && s[i] > 1; i-- {
		s[i] = 1
		if i < k-1 {
			s[i] = math.Nextafter32(s[i+1], -2)
		}
	}
	return kvquant.NewDatatype(s)
}

// HeadSamples cuts one layer's keys before RoPE or values, tokens x KVHeads·HeadDim
// token-major (as model.LayerState and Sensitivity hold them), into one Sample per KV head
// of rows [from, tokens) and HeadDim channels: the matrices kvquant quantizes per (layer,
// KV head), with rows before from (the attention sink) left out. fisher, if not nil, holds
// the per-element sensitivities in the same layout; channelFisher, if not nil, KVHeads·
// HeadDim per-channel ones (Sensitivity.ChannelMeans).
func HeadSamples(x, fisher, channelFisher []float32, kvHeads, headDim, from int) ([]Sample, error) {
	kvDim := kvHeads * headDim
	if kvHeads < 1 || headDim < 1 || len(x)%kvDim != 0 {
		return nil, fmt.Errorf("%w: %d values are not rows of %d heads of %d", ErrInvalid, len(x), kvHeads, headDim)
	}
	tokens := len(x) / kvDim
	if from < 0 || from > tokens {
		return nil, fmt.Errorf("%w: rows from %d of %d", ErrInvalid, from, tokens)
	}
	if fisher != nil && len(fisher) != len(x) {
		return nil, fmt.Errorf("%w: %d sensitivities for %d values", ErrInvalid, len(fisher), len(x))
	}
	if channelFisher != nil && len(channelFisher) != kvDim {
		return nil, fmt.Errorf("%w: %d channel sensitivities for %d channels", ErrInvalid, len(channelFisher), kvDim)
	}
	gather := func(src []float32, h int) []float32 {
		dst := make([]float32, 0, (tokens-from)*headDim)
		for t := from; t < tokens; t++ {
			dst = append(dst, src[t*kvDim+h*headDim:t*kvDim+(h+1)*headDim]...)
		}
		return dst
	}
	out := make([]Sample, kvHeads)
	for h := range out {
		out[h] = Sample{X: gather(x, h), Dim: headDim}
		if fisher != nil {
			out[h].Fisher = gather(fisher, h)
		}
		if channelFisher != nil {
			out[h].ChannelFisher = channelFisher[h*headDim : (h+1)*headDim]
		}
	}
	return out, nil
}
