package precompute

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"squeeze/calibrate"
	"squeeze/format"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// StageQuantize is the stage that quantizes the keys and values (quantized KV encodings
// only); Done and Total count layers.
const StageQuantize Stage = "quantize"

// KVOptions choose how Squeeze stores the context's keys and values. The zero value stores
// them as f16.
type KVOptions struct {
	// Encoding is format.KVEncodingF16 ("" means it) or a quantized encoding such as
	// "nuq3" (format.ParseKVEncoding): KVQuant's dense-and-sparse quantization, keys per
	// channel (before RoPE), values per token, the attention sink kept in f16.
	Encoding string
	// Outliers is the fraction of values kept exactly, half at each end of every vector,
	// used as given (0: none; the CLI defaults to kvquant.DefaultOutliers).
	Outliers float64
	// QNorm says when Q-Norm corrects each datatype's levels: QNormAuto (the zero
	// value) at 2 bits only, as KVQuant uses it.
	QNorm QNormMode
	// PostRoPE quantizes keys after RoPE (the ablation of KVQuant's pre-RoPE keys).
	PostRoPE bool
	// PerTokenKeys quantizes keys per token as values are (one range per key row,
	// outliers per row), the ablation of KVQuant's per-channel keys. The rows record
	// their axis, so artifacts read them as they read any other rows; attention reads
	// such keys row by row (Rows.Dots), without the multi-row key kernels.
	PerTokenKeys bool
	// Weighting weighs the normalized values in the nuq datatypes' k-means
	// (calibrate.FitDatatype): calibrate.FisherScale (the zero value) and FisherOnly use
	// the Fisher information of the keys and values (calibrate.Fisher, a backward pass
	// over the calibration text); calibrate.Unweighted needs no backward pass. The nf and
	// int families use none.
	Weighting calibrate.Weighting
	// Calib is the calibration text's tokens (BOS first), nil for the context itself (then
	// every element of the context has its own sensitivity; otherwise each channel's mean
	// sensitivity over the calibration text weighs the context's values of that channel).
	Calib []int32
	// Sensitivity, if set, holds the sensitivities already computed (calibrate.Fisher of
	// Calib, or of the context when Calib is nil), to share them between encodings; nil
	// computes them when the fit needs them.
	Sensitivity *calibrate.Sensitivity
	// Fisher tunes the sensitivities' backward pass (windows, progress).
	Fisher calibrate.FisherOptions
	// ExactWindow keeps the context's last window (always attended, next to every
	// query) in f16 like the attention sink, instead of quantizing it.
	ExactWindow bool
	// Rounding says how each vector's codes are chosen: RoundingDots (the zero value)
	// or RoundingNearest.
	Rounding Rounding
}

// Rounding says how Quantize chooses the codes of a vector, given its ranges and
// datatype.
type Rounding int

// The roundings.
const (
	// RoundingDots chooses each vector's codes, among the two signposts around each
	// value, to keep small the error of the dot products the vector takes part in
	// (kvquant.Moment): a key's with the context's last-window queries of its KV head,
	// after RoPE; a value's with the rows of the output projection that read its head.
	// On gocode-22m it takes about a fifth off nuq3's and nuq4's KL divergence.
	RoundingDots Rounding = iota
	// RoundingNearest codes every value as its nearest signpost (KVQuant).
	RoundingNearest
)

// MomentRidge is the ridge of RoundingDots's moments (kvquant.NewMoment).
const MomentRidge = 0.05

// String returns "dots" or "nearest".
func (r Rounding) String() string {
	switch r {
	case RoundingDots:
		return "dots"
	case RoundingNearest:
		return "nearest"
	}
	return fmt.Sprintf("Rounding(%d)", int(r))
}

// QNormMode says when Q-Norm (kvquant.Datatype.WithQNorm) corrects the levels of a
// quantized encoding's datatypes.
type QNormMode int

// The Q-Norm modes.
const (
	// QNormAuto applies Q-Norm at 2 bits (KVQuant's use; on gocode-22m it takes about
	// 5% off nuq2's KL divergence and does nothing measurable at 4 bits).
	QNormAuto QNormMode = iota
	// QNormOn applies it at every width.
	QNormOn
	// QNormOff never applies it.
	QNormOff
)

// String returns "auto", "on" or "off".
func (m QNormMode) String() string {
	switch m {
	case QNormAuto:
		return "auto"
	case QNormOn:
		return "on"
	case QNormOff:
		return "off"
	}
	return fmt.Sprintf("QNormMode(%d)", int(m))
}

// UsesQNorm reports whether o's datatypes get Q-Norm levels: QNormOn, or QNormAuto at 2
// bits; never for f16 or an encoding that does not parse.
func (o KVOptions) UsesQNorm() bool {
	if !o.quantized() {
		return false
	}
	_, bits, err := format.ParseKVEncoding(o.Encoding)
	if err != nil {
		return false
	}
	return o.QNorm == QNormOn || (o.QNorm == QNormAuto && bits == 2)
}

// needsFisher reports whether o's datatypes are fitted with sensitivities.
func (o KVOptions) needsFisher() bool {
	family, _, err := format.ParseKVEncoding(o.Encoding)
	return err == nil && family == format.KVFamilyNUQ && o.Weighting != calibrate.Unweighted
}

// calibration is the kv section's name for how o's datatypes are chosen.
func (o KVOptions) calibration() string {
	family, _, _ := format.ParseKVEncoding(o.Encoding)
	if family != format.KVFamilyNUQ {
		return ""
	}
	name := o.Weighting.String()
	if o.needsFisher() && o.Calib != nil {
		name += " (calibration text)"
	}
	return name
}

// Sensitivities returns the sensitivities o's datatype fit needs for a context of tokens
// (o.Sensitivity when set, else calibrate.Fisher of o.Calib or of tokens), or nil when
// the fit needs none. Compute them once to share between encodings (eval).
func (o KVOptions) Sensitivities(ctx context.Context, m *model.Model, pool *kernels.Pool, tokens []int32) (*calibrate.Sensitivity, error) {
	if !o.needsFisher() {
		return nil, nil
	}
	if o.Sensitivity != nil {
		return o.Sensitivity, nil
	}
	text := tokens
	if o.Calib != nil {
		text = o.Calib
	}
	s, err := calibrate.Fisher(ctx, m, pool, text, o.Fisher)
	if err != nil {
		return nil, fmt.Errorf("precompute: sensitivities: %w", err)
	}
	return s, nil
}

// quantized reports whether o asks for quantized rows.
func (o KVOptions) quantized() bool { return o.Encoding != "" && o.Encoding != format.KVEncodingF16 }

// check validates o against the model.
func (o KVOptions) check() error {
	if !o.quantized() {
		return nil
	}
	if _, _, err := format.ParseKVEncoding(o.Encoding); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !(o.Outliers >= 0 && o.Outliers < 0.5) {
		return fmt.Errorf("%w: outlier fraction %v, want [0, 0.5)", ErrInvalid, o.Outliers)
	}
	if o.QNorm < QNormAuto || o.QNorm > QNormOff {
		return fmt.Errorf("%w: Q-Norm mode %d", ErrInvalid, o.QNorm)
	}
	if o.Rounding < RoundingDots || o.Rounding > RoundingNearest {
		return fmt.Errorf("%w: rounding %d", ErrInvalid, o.Rounding)
	}
	if o.Weighting < calibrate.FisherScale || o.Weighting > calibrate.Unweighted {
		return fmt.Errorf("%w: weighting %d", ErrInvalid, o.Weighting)
	}
	if o.Calib != nil && len(o.Calib) < 2 {
		return fmt.Errorf("%w: a calibration text of %d tokens", ErrInvalid, len(o.Calib))
	}
	return nil
}

// ropeTable returns the RoPE table of m for n positions, its frequencies read as package
// model reads them (rope_freqs.weight from f when the model has it), checked against
// m.Rotate.
func ropeTable(m *model.Model, f *gguf.File, n int) (*kvquant.RoPE, []float64, error) {
	cfg := &m.Config
	var factors []float32
	if cfg.RopeFreqFactors {
		info, data, err := f.Tensor("rope_freqs.weight")
		if err != nil {
			return nil, nil, fmt.Errorf("precompute: RoPE factors: %w", err)
		}
		if info.Type != gguf.TypeF32 || len(data) != 4*(cfg.RopeDim/2) {
			return nil, nil, fmt.Errorf("%w: rope_freqs.weight of type %v and %d bytes", ErrInvalid, info.Type, len(data))
		}
		factors = make([]float32, cfg.RopeDim/2)
		for i := range factors {
			factors[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
	}
	freq, err := kvquant.Frequencies(cfg, factors)
	if err != nil {
		return nil, nil, err
	}
	rope, err := kvquant.NewRoPE(cfg.HeadDim, cfg.NeoX, freq, n)
	if err != nil {
		return nil, nil, err
	}
	if err := rope.Check(m); err != nil {
		return nil, nil, fmt.Errorf("precompute: %w", err)
	}
	return rope, freq, nil
}

// kvInput is what quantizeKV reads: per (layer, KV head) the pre-RoPE keys of every
// position as f16 rows (nil for post-RoPE quantization, which reads the context's keys).
type kvInput struct {
	pre  [][]uint16
	rope *kvquant.RoPE
	freq []float64
	// sens are the sensitivities (nil: unweighted or fixed datatypes); broadcast says
	// they are a calibration text's, spread over the context by channel.
	sens      *calibrate.Sensitivity
	broadcast bool
	// queries are the context's last-window queries (after RoPE) per (layer, KV head),
	// window tokens × the head's query heads × HeadDim (Squeezed.Queries), and outputs
	// the attention output projections per layer, Dim × QDim row-major: the moments of
	// RoundingDots.
	queries [][]float32
	outputs [][]float32
}

// outputProjections reads every layer's attn_output weights of m from f as Dim × QDim.
func outputProjections(m *model.Model, f *gguf.File) ([][]float32, error) {
	cfg := &m.Config
	out := make([][]float32, cfg.Layers)
	for l := range out {
		v, err := vector(f, fmt.Sprintf("blk.%d.attn_output.weight", l), cfg.Dim*cfg.QDim())
		if err != nil {
			return nil, err
		}
		out[l] = v
	}
	return out, nil
}

// headOutputs returns the columns of a layer's output projection wo (dim × QDim) that
// read KV head h's query heads, as vectors of HeadDim: dim × g vectors.
func headOutputs(wo []float32, cfg *model.Config, h int) []float32 {
	d, g, qd := cfg.HeadDim, cfg.Heads/cfg.KVHeads, cfg.QDim()
	out := make([]float32, 0, cfg.Dim*g*d)
	for r := range cfg.Dim {
		row := wo[r*qd : (r+1)*qd]
		out = append(out, row[h*g*d:(h+1)*g*d]...)
	}
	return out
}

// quantizeKV replaces the rows of c (f16, from Squeeze) with quantized ones as o says and
// returns the kv section's description. The first sink positions stay f16; the keys'
// per-channel ranges (per-token with o.PerTokenKeys) and the datatypes come from every
// other position. m and pool run
// the sensitivities' backward pass when the datatype fit needs it.
func quantizeKV(ctx context.Context, c *sparse.Context, m *model.Model, pool *kernels.Pool, in *kvInput, sink int, o KVOptions, report func(Progress)) (*format.KVInfo, error) {
	cfg := &m.Config
	family, bits, err := format.ParseKVEncoding(o.Encoding)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	kv := &format.KVInfo{Outliers: o.Outliers, QNorm: o.UsesQNorm(), PostRoPE: o.PostRoPE, Calibration: o.calibration()}
	if !o.PostRoPE {
		kv.Frequencies = in.freq
	}
	if in.sens, err = o.Sensitivities(ctx, m, pool, c.Tokens); err != nil {
		return nil, err
	}
	if in.sens != nil && (in.sens.Layers != cfg.Layers || in.sens.KVDim() != cfg.KVDim() || (o.Calib == nil && in.sens.Tokens != len(c.Tokens))) {
		return nil, fmt.Errorf("%w: sensitivities of %d layers × %d tokens × %d for the context's %d × %d × %d", ErrInvalid,
			in.sens.Layers, in.sens.Tokens, in.sens.KVDim(), cfg.Layers, len(c.Tokens), cfg.KVDim())
	}
	in.broadcast = o.Calib != nil
	kv.Layers = make([]format.KVLayer, cfg.Layers)
	var done int
	var mu sync.Mutex
	err = parallel(ctx, cfg.Layers, func(l int) error {
		layer, err := quantizeLayer(ctx, c, cfg, in, l, sink, family, bits, o)
		if err != nil {
			return fmt.Errorf("precompute: quantize layer %d: %w", l, err)
		}
		kv.Layers[l] = *layer
		mu.Lock()
		done++
		mu.Unlock()
		return nil
	}, func() {
		mu.Lock()
		p := Progress{Stage: StageQuantize, Done: done, Total: cfg.Layers}
		mu.Unlock()
		report(p)
	})
	if err != nil {
		return nil, err
	}
	return kv, nil
}

// headRows are one KV head's keys and values of the positions after the sink, by
// position, as float32.
type headRows struct {
	keys, vals []float32
}

// quantizeLayer quantizes layer l's heads in place and returns its datatypes and errors.
func quantizeLayer(ctx context.Context, c *sparse.Context, cfg *model.Config, in *kvInput, l, sink int, family string, bits int, o KVOptions) (*format.KVLayer, error) {
	d, kvh, S := cfg.HeadDim, cfg.KVHeads, len(c.Tokens)
	rest := S - sink
	heads := make([]headRows, kvh)
	for h := range heads {
		hd := &c.Layers[l][h]
		hr := &heads[h]
		hr.vals = byPosition(hd.Values, hd.Tree.Order(), hd.AlwaysV, hd.Always, sink, rest, d)
		if o.PostRoPE {
			hr.keys = byPosition(hd.Keys, hd.Tree.Order(), hd.AlwaysK, hd.Always, sink, rest, d)
		} else {
			hr.keys = make([]float32, rest*d)
			kernels.F16ToF32Slice(hr.keys, in.pre[l*kvh+h][sink*d:])
		}
	}
	var sk, sv []float32 // tokens × KVDim sensitivities of the layer
	if in.sens != nil {
		if in.broadcast {
			sk, sv = in.sens.Broadcast(l, S, calibSkip(o))
		} else {
			sk, sv = in.sens.Keys[l], in.sens.Values[l]
		}
	}
	// Ranges of every head (those Quantize uses), then the layer's datatypes.
	kr := make([][]kvquant.Range, kvh)
	vr := make([][]kvquant.Range, kvh)
	var ks, vs []calibrate.Sample
	var ku, vu []float32 // normalized dense values, for Q-Norm
	qnorm := o.UsesQNorm()
	keyAxis := o.keyAxis()
	for h, hr := range heads {
		var kout, vout []bool
		var err error
		if kr[h], kout, err = kvquant.Ranges(hr.keys, d, keyAxis, o.Outliers); err != nil {
			return nil, err
		}
		if vr[h], vout, err = kvquant.Ranges(hr.vals, d, kvquant.PerToken, o.Outliers); err != nil {
			return nil, err
		}
		ks = append(ks, calibrate.Sample{X: hr.keys, Dim: d, Fisher: headSensitivity(sk, h, kvh, d, sink), Ranges: kr[h]})
		vs = append(vs, calibrate.Sample{X: hr.vals, Dim: d, Fisher: headSensitivity(sv, h, kvh, d, sink), Ranges: vr[h]})
		if qnorm {
			ku = appendNormalized(ku, hr.keys, kout, keyAxis, kr[h], d)
			vu = appendNormalized(vu, hr.vals, vout, kvquant.PerToken, vr[h], d)
		}
	}
	kt, err := fitDatatype(ctx, family, bits, ks, keyAxis, o)
	if err != nil {
		return nil, fmt.Errorf("key datatype: %w", err)
	}
	vt, err := fitDatatype(ctx, family, bits, vs, kvquant.PerToken, o)
	if err != nil {
		return nil, fmt.Errorf("value datatype: %w", err)
	}
	if qnorm {
		kt, vt = kt.WithQNorm(ku), vt.WithQNorm(vu)
	}
	ks, vs, ku, vu = nil, nil, nil, nil

	out := &format.KVLayer{Key: kt, Value: vt}
	var kerr, knorm, verr, vnorm float64
	for h, hr := range heads {
		hd := &c.Layers[l][h]
		order := hd.Tree.Order()
		window := hd.Always[sink:]
		var kmom, vmom *kvquant.Moment
		if o.Rounding == RoundingDots {
			var err error
			if kmom, err = kvquant.NewMoment(in.queries[l*kvh+h], d, MomentRidge); err != nil {
				return nil, fmt.Errorf("head %d queries: %w", h, err)
			}
			if vmom, err = kvquant.NewMoment(headOutputs(in.outputs[l], cfg, h), d, MomentRidge); err != nil {
				return nil, fmt.Errorf("head %d output projection: %w", h, err)
			}
		}
		keyParams := func(pos []int32) kvquant.Params {
			p := kvquant.Params{Type: kt, Axis: keyAxis, Ranges: rangesAt(keyAxis, kr[h], pos, sink), Moment: kmom}
			if !o.PostRoPE {
				p.Pos, p.RoPE = pos, in.rope
			}
			return p
		}
		valParams := func(pos []int32) kvquant.Params {
			return kvquant.Params{Type: vt, Axis: kvquant.PerToken, Ranges: rangesAt(kvquant.PerToken, vr[h], pos, sink), Moment: vmom}
		}
		keys, err := kvquant.Quantize(gatherRows(hr.keys, order, sink, d), d, keyParams(order))
		if err != nil {
			return nil, err
		}
		vals, err := kvquant.Quantize(gatherRows(hr.vals, order, sink, d), d, valParams(order))
		if err != nil {
			return nil, err
		}
		type part struct {
			r        *kvquant.Rows
			src      []float32
			pos      []int32
			err, nrm *float64
		}
		parts := []part{{keys, hr.keys, order, &kerr, &knorm}, {vals, hr.vals, order, &verr, &vnorm}}
		if o.ExactWindow {
			for _, p := range parts {
				e, n := reconstruction(p.r, p.src, p.pos, sink, d)
				*p.err += e
				*p.nrm += n
			}
			hd.Keys, hd.Values = keys, vals
			continue
		}
		wk, err := kvquant.Quantize(gatherRows(hr.keys, window, sink, d), d, keyParams(window))
		if err != nil {
			return nil, err
		}
		wv, err := kvquant.Quantize(gatherRows(hr.vals, window, sink, d), d, valParams(window))
		if err != nil {
			return nil, err
		}
		parts = append(parts, part{wk, hr.keys, window, &kerr, &knorm}, part{wv, hr.vals, window, &verr, &vnorm})
		for _, p := range parts {
			e, n := reconstruction(p.r, p.src, p.pos, sink, d)
			*p.err += e
			*p.nrm += n
		}
		ak, av := hd.AlwaysK.(*sparse.F16Rows), hd.AlwaysV.(*sparse.F16Rows)
		sinkK := &sparse.F16Rows{Dim: d, Data: ak.Data[:sink*d]}
		sinkV := &sparse.F16Rows{Dim: d, Data: av.Data[:sink*d]}
		jk, err := kvquant.Join(sinkK, wk)
		if err != nil {
			return nil, err
		}
		jv, err := kvquant.Join(sinkV, wv)
		if err != nil {
			return nil, err
		}
		hd.Keys, hd.Values, hd.AlwaysK, hd.AlwaysV = keys, vals, jk, jv
	}
	out.KeyError = relative(kerr, knorm)
	out.ValueError = relative(verr, vnorm)
	return out, nil
}

// keyAxis is the axis of o's key ranges: per channel, or per token with PerTokenKeys.
func (o KVOptions) keyAxis() kvquant.Axis {
	if o.PerTokenKeys {
		return kvquant.PerToken
	}
	return kvquant.PerChannel
}

// rangesAt returns the ranges Quantize takes for the rows at positions pos, from ranges
// along axis over the positions sink.. by position: all of them per channel, each row's
// own per token.
func rangesAt(axis kvquant.Axis, ranges []kvquant.Range, pos []int32, sink int) []kvquant.Range {
	if axis == kvquant.PerChannel {
		return ranges
	}
	out := make([]kvquant.Range, len(pos))
	for i, p := range pos {
		out[i] = ranges[int(p)-sink]
	}
	return out
}

func relative(e, n float64) float64 {
	if n == 0 {
		return 0
	}
	return math.Sqrt(e / n)
}

// reconstruction returns Σ (x̂ − x)² and Σ x² over rows r (as stored: keys before RoPE
// unrotated) against the source rows src (positions sink.. by position) at positions pos.
func reconstruction(r *kvquant.Rows, src []float32, pos []int32, sink, d int) (float64, float64) {
	u := r.Unrotated()
	row := make([]float32, d)
	var e, n float64
	for i, p := range pos {
		u.Dequantize(row, i, i+1)
		x := src[(int(p)-sink)*d : (int(p)-sink+1)*d]
		for j := range row {
			diff := float64(row[j] - x[j])
			e += diff * diff
			n += float64(x[j]) * float64(x[j])
		}
	}
	return e, n
}

// byPosition returns the rows of positions sink..sink+rest−1 as float32, position-major,
// from the clustered rows (row i at order[i]) and the always-attended ones (row i at
// always[i]).
func byPosition(rows sparse.Rows, order []int32, arows sparse.Rows, always []int32, sink, rest, d int) []float32 {
	out := make([]float32, rest*d)
	for _, part := range []struct {
		r   sparse.Rows
		pos []int32
	}{{rows, order}, {arows, always}} {
		f := part.r.(*sparse.F16Rows)
		for i, p := range part.pos {
			if int(p) < sink {
				continue
			}
			kernels.F16ToF32Slice(out[(int(p)-sink)*d:(int(p)-sink+1)*d], f.Data[i*d:(i+1)*d])
		}
	}
	return out
}

// gatherRows returns the rows at positions pos from src (positions sink.., by position).
func gatherRows(src []float32, pos []int32, sink, d int) []float32 {
	out := make([]float32, len(pos)*d)
	for i, p := range pos {
		copy(out[i*d:(i+1)*d], src[(int(p)-sink)*d:])
	}
	return out
}

// appendNormalized appends the normalized dense values of x (rows of d) to u.
func appendNormalized(u, x []float32, out []bool, axis kvquant.Axis, ranges []kvquant.Range, d int) []float32 {
	for i, v := range x {
		if !out[i] {
			u = append(u, axis.Of(ranges, d, i).Normalize(v))
		}
	}
	return u
}

// headSensitivity returns KV head h's share of a layer's sensitivities (tokens × kvh·d,
// token-major) for the rows from sink on, as rows of d; nil for nil.
func headSensitivity(sens []float32, h, kvh, d, sink int) []float32 {
	if sens == nil {
		return nil
	}
	rows := len(sens)/(kvh*d) - sink
	out := make([]float32, rows*d)
	for r := range rows {
		copy(out[r*d:(r+1)*d], sens[(r+sink)*kvh*d+h*d:])
	}
	return out
}

// calibSkip is the number of leading calibration-text tokens left out of its per-channel
// sensitivity means: the attention sink of its windows.
func calibSkip(o KVOptions) int {
	switch {
	case o.Fisher.Sink < 0:
		return 0
	case o.Fisher.Sink == 0:
		return calibrate.DefaultSink
	}
	return o.Fisher.Sink
}

// fitDatatype returns the datatype of a family at bits: fixed for nf and int; for nuq the
// weighted 1-D k-means of the samples' normalized dense values (calibrate.FitDatatype,
// weighted as o.Weighting says).
func fitDatatype(ctx context.Context, family string, bits int, samples []calibrate.Sample, axis kvquant.Axis, o KVOptions) (kvquant.Datatype, error) {
	switch family {
	case format.KVFamilyNF:
		return kvquant.NormalFloat(bits)
	case format.KVFamilyInt:
		return kvquant.Uniform(bits)
	}
	return calibrate.FitDatatype(ctx, samples, axis, calibrate.DatatypeOptions{Bits: bits, Weighting: o.Weighting, Outliers: o.Outliers})
}

// kvEncoding is the header's KV encoding for o.
func kvEncoding(o KVOptions) string {
	if o.quantized() {
		return o.Encoding
	}
	return format.KVEncodingF16
}

// Quantize returns sq's context with its rows quantized as o says, and the kv section's
// description: a new Context sharing sq's tokens, trees and thresholds, sq's rows left
// as they are. sq must hold f16 rows (SqueezeOptions.KV left at f16) and, unless
// o.PostRoPE, the keys before RoPE (SqueezeOptions.KeepPreRoPE); m and f are the model
// Squeeze ran, pool runs the sensitivities' backward pass if the fit needs one (share
// them between encodings with o.Sensitivity). It lets one prefill serve several
// encodings (squeeze eval --kv).
func Quantize(ctx context.Context, sq *Squeezed, m *model.Model, f *gguf.File, pool *kernels.Pool, o KVOptions) (*sparse.Context, *format.KVInfo, error) {
	if !o.quantized() {
		return nil, nil, fmt.Errorf("%w: KV encoding %q is not quantized", ErrInvalid, o.Encoding)
	}
	if err := o.check(); err != nil {
		return nil, nil, err
	}
	src := sq.Context
	cfg := &m.Config
	in := &kvInput{pre: sq.PreRoPE, queries: sq.Queries}
	if o.Rounding == RoundingDots {
		if sq.Queries == nil {
			return nil, nil, fmt.Errorf("%w: the squeezed context kept no queries", ErrInvalid)
		}
		var err error
		if in.outputs, err = outputProjections(m, f); err != nil {
			return nil, nil, err
		}
	}
	if !o.PostRoPE {
		if len(sq.PreRoPE) != cfg.Layers*cfg.KVHeads {
			return nil, nil, fmt.Errorf("%w: the squeezed context kept no keys before RoPE", ErrInvalid)
		}
		var err error
		if in.rope, in.freq, err = ropeTable(m, f, len(src.Tokens)); err != nil {
			return nil, nil, err
		}
	}
	c := &sparse.Context{Tokens: src.Tokens, Thresholds: src.Thresholds, Layers: make([][]sparse.Head, len(src.Layers))}
	for l, heads := range src.Layers {
		c.Layers[l] = slices.Clone(heads)
		for _, hd := range heads {
			for _, r := range []sparse.Rows{hd.Keys, hd.Values, hd.AlwaysK, hd.AlwaysV} {
				if _, ok := r.(*sparse.F16Rows); !ok {
					return nil, nil, fmt.Errorf("%w: layer %d: rows of type %T, want f16", ErrInvalid, l, r)
				}
			}
		}
	}
	kv, err := quantizeKV(ctx, c, m, pool, in, sq.Sink, o, func(Progress) {})
	if err != nil {
		return nil, nil, err
	}
	return c, kv, nil
}
