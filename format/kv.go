package format

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"squeeze/runtime/kvquant"
	"squeeze/runtime/sparse"
)

// SectionKV names the section that describes quantized KV rows (artifacts whose KV
// encoding is not KVEncodingF16).
const SectionKV = "kv"

// The datatype families of quantized KV encodings: an encoding is a family followed by a
// width in bits, "nuq3", "nf4", "int2".
const (
	// KVFamilyNUQ is KVQuant's non-uniform datatype fitted per layer by 1-D k-means.
	KVFamilyNUQ = "nuq"
	// KVFamilyNF is NormalFloat (kvquant.NormalFloat).
	KVFamilyNF = "nf"
	// KVFamilyInt is the uniform integer datatype (kvquant.Uniform).
	KVFamilyInt = "int"
)

// ParseKVEncoding splits a KV encoding: KVEncodingF16 gives family "f16" and 16 bits;
// otherwise a family (KVFamilyNUQ, KVFamilyNF, KVFamilyInt) and a width from
// kvquant.MinBits to kvquant.MaxBits, as in "nuq3".
func ParseKVEncoding(s string) (family string, bits int, err error) {
	if s == KVEncodingF16 {
		return KVEncodingF16, 16, nil
	}
	for _, f := range []string{KVFamilyNUQ, KVFamilyNF, KVFamilyInt} {
		if rest, ok := strings.CutPrefix(s, f); ok {
			b, err := strconv.Atoi(rest)
			if err == nil && b >= kvquant.MinBits && b <= kvquant.MaxBits && rest == strconv.Itoa(b) {
				return f, b, nil
			}
		}
	}
	return "", 0, fmt.Errorf("KV encoding %q: want f16 or nuq, nf or int followed by %d to %d bits", s, kvquant.MinBits, kvquant.MaxBits)
}

// KVInfo is the kv section: how the quantized rows were made and what quantization
// measured. The rows themselves are in the layer sections.
type KVInfo struct {
	// Outliers is the fraction of values kept exactly, half at each end of each vector
	// (kvquant.Ranges).
	Outliers float64
	// QNorm reports that the datatypes' levels were corrected by Q-Norm.
	QNorm bool
	// PostRoPE reports that keys were quantized after RoPE (an ablation): they are read as
	// stored. Otherwise keys are stored before RoPE and rotated with Frequencies.
	PostRoPE bool
	// Calibration says how the datatypes were chosen, e.g. "fisher", "unweighted" or "" for
	// fixed datatypes (nf, int).
	Calibration string
	// Frequencies are the RoPE angle per position of each pair (kvquant.Frequencies):
	// rows stored before RoPE are rotated with them. Empty with PostRoPE.
	Frequencies []float64
	// Layers holds one entry per layer.
	Layers []KVLayer
}

// KVLayer is one layer's quantization: its datatypes and reconstruction errors.
type KVLayer struct {
	// Key and Value are the datatypes of the layer's keys and values.
	Key, Value kvquant.Datatype
	// KeyError and ValueError are the relative reconstruction errors ‖x̂ − x‖ / ‖x‖ over the
	// layer's quantized keys (before RoPE) and values, outliers included.
	KeyError, ValueError float64
}

// encodeKV encodes the kv section.
func encodeKV(e *Encoder, kv *KVInfo) {
	e.Float64(kv.Outliers)
	e.Bool(kv.QNorm)
	e.Bool(kv.PostRoPE)
	e.Text(kv.Calibration)
	e.Float64s(kv.Frequencies)
	e.Uvarint(uint64(len(kv.Layers)))
	for _, l := range kv.Layers {
		for _, t := range []kvquant.Datatype{l.Key, l.Value} {
			e.Float32s(t.Signposts)
			e.Float32s(t.Levels)
		}
		e.Float64(l.KeyError)
		e.Float64(l.ValueError)
	}
}

// decodeKV decodes and checks the kv section for an artifact with header h.
func decodeKV(d *Decoder, h *Header) (*KVInfo, error) {
	kv := &KVInfo{Outliers: d.Float64(), QNorm: d.Bool(), PostRoPE: d.Bool(), Calibration: d.Text()}
	kv.Frequencies = slices.Clone(d.Float64s())
	n := readCount(d)
	if err := d.Err(); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return &Error{Where: sectionWhere(SectionKV) + " data", Offset: int64(d.Offset()), Reason: fmt.Sprintf(format, args...), Err: ErrCorrupt}
	}
	if n != h.Model.Layers {
		return nil, bad("%d layers, header says %d", n, h.Model.Layers)
	}
	for l := range n {
		var ts [2]kvquant.Datatype
		for i := range ts {
			ts[i] = kvquant.Datatype{Signposts: slices.Clone(d.Float32s()), Levels: slices.Clone(d.Float32s())}
		}
		layer := KVLayer{Key: ts[0], Value: ts[1], KeyError: d.Float64(), ValueError: d.Float64()}
		if err := d.Err(); err != nil {
			return nil, err
		}
		for _, t := range ts {
			if err := t.Check(); err != nil {
				return nil, bad("layer %d: %v", l, err)
			}
		}
		kv.Layers = append(kv.Layers, layer)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if !finite(kv.Outliers) || kv.Outliers < 0 || kv.Outliers >= 0.5 {
		return nil, bad("outlier fraction %v", kv.Outliers)
	}
	if kv.PostRoPE != (len(kv.Frequencies) == 0) {
		return nil, bad("%d RoPE frequencies with post-RoPE keys %v", len(kv.Frequencies), kv.PostRoPE)
	}
	if !kv.PostRoPE && 2*len(kv.Frequencies) != h.Model.RopeDim {
		return nil, bad("%d RoPE frequencies for a RoPE dimension of %d", len(kv.Frequencies), h.Model.RopeDim)
	}
	return kv, nil
}

// Tags of a rows field in the layer sections of a quantized artifact.
const (
	rowsF16       = 0
	rowsQuantized = 1
	rowsJoined    = 2
)

// Forms of the per-row ranges of quantized rows.
const (
	rangesHalf = 0 // Mid and Half of each row as half floats
	rangesGrid = 1 // 2 bytes a row on kvquant's grid (kvquant.EncodeTokenRanges)
)

// encodeF16Rows writes f16 rows' values: on a cache line of the file where line is set
// (schema 3), else after a line-aligned count (schema 2).
func encodeF16Rows(e *Encoder, data []uint16, line bool) {
	if line {
		e.LineUint16s(data)
		return
	}
	e.Align(Alignment)
	e.Uint16s(data)
}

// decodeF16Rows reads values written by encodeF16Rows.
func decodeF16Rows(d *Decoder, line bool) []uint16 {
	if line {
		return d.LineUint16s()
	}
	d.Align(Alignment)
	return d.Uint16s()
}

// encodeRows encodes one rows field of a quantized artifact: n rows of dim values, the
// rotated ones at positions pos (pos[i] for row i), the values of f16 rows and the codes
// of quantized ones on a cache line where line is set (schema 3).
func encodeRows(e *Encoder, r sparse.Rows, dim, n int, pos []int32, line bool) error {
	if r == nil || r.Len() != n {
		return fmt.Errorf("rows of %d for %d positions", lenOf(r), n)
	}
	switch v := r.(type) {
	case *sparse.F16Rows:
		if v.Dim != dim || len(v.Data) != n*dim {
			return fmt.Errorf("f16 rows: %d values of dimension %d for %d rows of %d", len(v.Data), v.Dim, n, dim)
		}
		e.Uint8(rowsF16)
		encodeF16Rows(e, v.Data, line)
	case *kvquant.Rows:
		if v.Dim != dim {
			return fmt.Errorf("quantized rows of %d values, want %d", v.Dim, dim)
		}
		if v.Pos != nil && !slices.Equal(v.Pos, pos[:n]) {
			return errors.New("quantized keys are not at the positions of their rows")
		}
		e.Uint8(rowsQuantized)
		e.Uint8(uint8(v.Bits))
		e.Uint8(uint8(v.Axis))
		e.Bool(v.Pos != nil)
		e.Float32s(v.Levels)
		if v.Axis == kvquant.PerChannel {
			ch := make([]float32, 0, 2*len(v.Channel))
			for _, rg := range v.Channel {
				ch = append(ch, rg.Mid, rg.Half)
			}
			e.Float32s(ch)
		} else if base, codes, ok := kvquant.EncodeTokenRanges(v.Token); ok {
			e.Uint8(rangesGrid)
			e.Varint(int64(base))
			e.Blob(codes)
		} else {
			e.Uint8(rangesHalf)
			e.Uint16s(v.Token)
		}
		if line {
			e.LineBlob(v.Codes)
		} else {
			e.Align(Alignment)
			e.Blob(v.Codes)
		}
		e.Blob(kvquant.EncodeOutliers(v.OutStart, v.OutIndex, v.Dim))
		e.Uint16s(v.OutValue)
	case *kvquant.Joined:
		e.Uint8(rowsJoined)
		e.Uvarint(uint64(len(v.Parts)))
		at := 0
		for i, p := range v.Parts {
			if _, nested := p.(*kvquant.Joined); nested {
				return fmt.Errorf("joined rows: part %d is joined rows", i)
			}
			e.Uvarint(uint64(p.Len()))
			if err := encodeRows(e, p, dim, p.Len(), pos[at:], line); err != nil {
				return fmt.Errorf("joined rows: part %d: %w", i, err)
			}
			at += p.Len()
		}
	default:
		return fmt.Errorf("rows of type %T", r)
	}
	return nil
}

func lenOf(r sparse.Rows) int {
	if r == nil {
		return 0
	}
	return r.Len()
}

// decodeRows decodes a rows field written by encodeRows: n rows of dim values at
// positions pos, rotated with rope where stored before RoPE, line as encodeRows had it.
// bad builds corruption errors.
func decodeRows(d *Decoder, dim, n int, pos []int32, rope *kvquant.RoPE, line, nested bool, bad func(string, ...any) error) (sparse.Rows, error) {
	tag := d.Uint8()
	if err := d.Err(); err != nil {
		return nil, err
	}
	switch {
	case tag == rowsF16:
		data := decodeF16Rows(d, line)
		if err := d.Err(); err != nil {
			return nil, err
		}
		if len(data) != n*dim {
			return nil, bad("%d f16 values for %d rows of %d", len(data), n, dim)
		}
		return &sparse.F16Rows{Dim: dim, Data: data}, nil
	case tag == rowsQuantized:
		r := &kvquant.Rows{Dim: dim, Bits: int(d.Uint8()), Axis: kvquant.Axis(d.Uint8())}
		rotated := d.Bool()
		r.Levels = d.Float32s()
		if err := d.Err(); err != nil {
			return nil, err
		}
		if r.Axis != kvquant.PerChannel && r.Axis != kvquant.PerToken {
			return nil, bad("rows along axis %d", r.Axis)
		}
		var base int64
		var ranges []byte
		form := uint8(rangesHalf)
		if r.Axis == kvquant.PerChannel {
			ch := d.Float32s()
			if len(ch)%2 != 0 {
				return nil, bad("odd channel range array")
			}
			for i := 0; i+1 < len(ch); i += 2 {
				r.Channel = append(r.Channel, kvquant.Range{Mid: ch[i], Half: ch[i+1]})
			}
		} else if form = d.Uint8(); form == rangesGrid {
			base, ranges = d.Varint(), d.Blob()
		} else {
			r.Token = d.Uint16s()
		}
		if line {
			r.Codes = d.LineBlob()
		} else {
			d.Align(Alignment)
			r.Codes = d.Blob()
		}
		gaps := d.Blob()
		r.OutValue = d.Uint16s()
		if err := d.Err(); err != nil {
			return nil, err
		}
		if r.Bits < kvquant.MinBits || r.Bits > kvquant.MaxBits || len(r.Codes)%r.RowBytes() != 0 {
			return nil, bad("%d code bytes of %d bits for rows of %d", len(r.Codes), r.Bits, dim)
		}
		rows := len(r.Codes) / r.RowBytes()
		var err error
		if r.Axis == kvquant.PerToken {
			switch {
			case form == rangesGrid && base >= math.MinInt32 && base <= math.MaxInt32:
				if r.Token, err = kvquant.DecodeTokenRanges(int(base), ranges); err != nil {
					return nil, bad("%v", err)
				}
			case form != rangesHalf:
				return nil, bad("row ranges of form %d from step %d", form, base)
			}
			if r.Token == nil {
				r.Token = []uint16{}
			}
		}
		if r.OutStart, r.OutIndex, err = kvquant.DecodeOutliers(gaps, rows, dim, len(r.OutValue)); err != nil {
			return nil, bad("%v", err)
		}
		if rotated {
			if rope == nil {
				return nil, bad("keys stored before RoPE in an artifact without RoPE frequencies")
			}
			r.Pos, r.RoPE = pos[:n:n], rope
		}
		if err := r.Init(); err != nil {
			return nil, bad("%v", err)
		}
		if r.Len() != n {
			return nil, bad("%d quantized rows, want %d", r.Len(), n)
		}
		return r, nil
	case tag == rowsJoined && !nested:
		np := readCount(d)
		if err := d.Err(); err != nil {
			return nil, err
		}
		if np > d.Remaining() {
			return nil, bad("%d parts", np)
		}
		var parts []sparse.Rows
		at := 0
		for range np {
			m := readCount(d)
			if err := d.Err(); err != nil {
				return nil, err
			}
			if m > n-at {
				return nil, bad("part of %d rows where %d remain", m, n-at)
			}
			p, err := decodeRows(d, dim, m, pos[at:], rope, line, true, bad)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
			at += m
		}
		if at != n {
			return nil, bad("joined rows of %d for %d", at, n)
		}
		return kvquant.Join(parts...)
	default:
		return nil, bad("rows tag %d", tag)
	}
}

// newRoPE returns the RoPE table of a quantized artifact, or nil for post-RoPE keys.
func newRoPE(h *Header, kv *KVInfo) (*kvquant.RoPE, error) {
	if kv.PostRoPE {
		return nil, nil
	}
	for i, f := range kv.Frequencies {
		if !finite(f) || math.Abs(f) > 1e6 {
			return nil, fmt.Errorf("RoPE frequency %d is %v", i, f)
		}
	}
	return kvquant.NewRoPE(h.Model.HeadDim, h.Model.NeoX, kv.Frequencies, h.Tokens)
}

// validKV reports whether s is a KV encoding this package reads.
func validKV(s string) bool {
	_, _, err := ParseKVEncoding(s)
	return err == nil
}

// quantized reports whether h's artifact stores quantized rows (tagged rows and a kv
// section) rather than the f16 rows of KVEncodingF16.
func quantized(h *Header) bool { return h.Settings.KV != KVEncodingF16 }
