package format

import (
	"fmt"
	"math"

	"squeeze/runtime/earlyexit"
	"squeeze/runtime/kernels"
)

// SectionPredictor names the optional section that holds SPEED's early-exit predictor
// (earlyexit.Predictor), fitted by precompute on the context's own hidden states.
const SectionPredictor = "predictor"

// encodePredictor writes p: its depth, width and rank, the bias, the map (the full
// matrix, or the factors A and B) rounded to half floats, then the scores of every
// candidate depth.
func encodePredictor(e *Encoder, p *earlyexit.Predictor) {
	e.Uvarint(uint64(p.Layer))
	e.Uvarint(uint64(p.Dim))
	e.Uvarint(uint64(p.Rank))
	e.Float32s(p.Bias)
	for _, m := range [][]float32{p.Full, p.A, p.B} {
		h := make([]uint16, len(m))
		kernels.F32ToF16Slice(h, m)
		e.Uint16s(h)
	}
	e.Uvarint(uint64(len(p.Scores)))
	for _, s := range p.Scores {
		e.Uvarint(uint64(s.Layer))
		e.Float64(s.Acceptance)
		e.Float64(s.Raw)
	}
}

// decodePredictor reads and checks a predictor section for the model h describes. The
// bias is a view of the section's bytes; the map is decoded to float32.
func decodePredictor(d *Decoder, h *Header) (*earlyexit.Predictor, error) {
	bad := func(format string, args ...any) error {
		return &Error{Where: sectionWhere(SectionPredictor) + " data", Offset: int64(d.Offset()), Reason: fmt.Sprintf(format, args...), Err: ErrCorrupt}
	}
	layer, dim, rank := d.Uvarint(), d.Uvarint(), d.Uvarint()
	if err := d.Err(); err != nil {
		return nil, err
	}
	if layer >= uint64(h.Model.Layers) || dim != uint64(h.Model.Dim) || rank > dim {
		return nil, bad("depth %d, width %d and rank %d for a model of %d layers of width %d", layer, dim, rank, h.Model.Layers, h.Model.Dim)
	}
	p := &earlyexit.Predictor{Layer: int(layer), Dim: int(dim), Rank: int(rank)}
	p.Bias = d.Float32s()
	p.Full = halfArray(d)
	p.A = halfArray(d)
	p.B = halfArray(d)
	n := d.Uvarint()
	if err := d.Err(); err != nil {
		return nil, err
	}
	if n > uint64(h.Model.Layers) || n > uint64(d.Remaining()/17) { // a score takes at least 17 bytes
		return nil, bad("%d scores for a model of %d layers in %d bytes", n, h.Model.Layers, d.Remaining())
	}
	for range n {
		s := earlyexit.Score{Layer: int(min(d.Uvarint(), math.MaxInt32)), Acceptance: d.Float64(), Raw: d.Float64()}
		if err := d.Err(); err != nil {
			return nil, err
		}
		if s.Layer < 1 || s.Layer >= h.Model.Layers || !(s.Acceptance >= 0 && s.Acceptance <= 1) || !(s.Raw >= 0 && s.Raw <= 1) {
			return nil, bad("score %+v", s)
		}
		p.Scores = append(p.Scores, s)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if err := p.Check(nil); err != nil {
		return nil, bad("%v", err)
	}
	return p, nil
}

// halfArray reads an array of half floats as float32; an empty array is nil, as an
// absent map part is held.
func halfArray(d *Decoder) []float32 {
	h := d.Uint16s()
	if len(h) == 0 {
		return nil
	}
	v := make([]float32, len(h))
	kernels.F16ToF32Slice(v, h)
	return v
}
