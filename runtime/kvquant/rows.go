package kvquant

import (
	"errors"
	"fmt"
	"math"

	"squeeze/runtime/kernels"
	"squeeze/runtime/sparse"
)

// ErrCorrupt means a Rows' fields are inconsistent (Init): a decoded artifact is damaged.
var ErrCorrupt = errors.New("kvquant: corrupt quantized rows")

// Rows is one (layer, KV head)'s keys or values quantized: Len() rows of Dim values, in
// the order the caller stores them (the tree's cluster-contiguous order for a squeezed
// context). Row i, value j decodes to
//
//	Range(i, j).Restore(Levels[code(i, j)])
//
// with Range(i, j) = Channel[j] (PerChannel) or the half floats Token[2i], Token[2i+1] as
// Mid and Half (PerToken), unless element i·Dim+j is an outlier, which decodes to its
// stored half-float value. Rows with Pos are keys stored before RoPE: decoded row i is
// then rotated to position Pos[i] with RoPE.
//
// The exported fields are the stored form (package format writes and reads them); a Rows
// built by hand or decoded from a file must pass Init before use. After Init it is
// read-only and safe for concurrent use.
type Rows struct {
	// Dim is the number of values per row, Bits the code width (MinBits..MaxBits).
	Dim, Bits int
	// Axis says whether the ranges are per channel or per token.
	Axis Axis
	// Levels are the datatype's 2^Bits decoded levels (Datatype.Levels).
	Levels []float32
	// Codes holds each row's Dim codes packed (Pack), RowBytes() bytes per row.
	Codes []byte
	// Channel holds Dim ranges (PerChannel); Token holds Mid and Half of every row as
	// half floats (PerToken). The other is nil.
	Channel []Range
	Token   []uint16
	// Outliers, sorted by element e = row·Dim + channel and cut into blocks of
	// BlockRows(Dim) rows: block b's entries are OutStart[b] .. OutStart[b+1]−1, each
	// with OutIndex = e − b·BlockRows(Dim)·Dim and OutValue the value as a half float.
	// OutStart has one entry per block plus one.
	OutStart []uint32
	OutIndex []uint16
	OutValue []uint16
	// Pos and RoPE, for keys stored before RoPE: row i is rotated to position Pos[i]. Both
	// are nil for rows stored as they are read.
	Pos  []int32
	RoPE *RoPE

	n   int
	lut []float32 // PerChannel: Dim × 2^Bits decoded values (the reference decoding)
	lv  kernels.KVQLevels
	// PerChannel: the channels' Half and Mid, for the decoding kernel.
	chHalf, chMid []float32
	// For the multi-row kernels (DotsN, AccumulateN): the levels repeated, and the
	// channels' ranges interleaved (kernels.KVQChannelRanges) when keys qualify.
	lvp    kernels.KVQLevels
	ranges []float32
	// The ranges for kernels.KVQScoreKeysLo (KVQChannelRanges16), when it runs.
	ranges16 []float32
	// PerToken rows that AccumulateN adds in groups: the rows' Mids and Halves as floats.
	mids, halves []float32
	// The outliers as the multi-row paths add them (outliers): each one's row, and for
	// keys its pair and the rotated difference from its dense value, for values its
	// channel and that difference.
	out outlierFixes
}

// Unrotated returns r read as stored: keys stored before RoPE without their rotation (a
// shallow copy sharing r's storage; r itself if it has no positions).
func (r *Rows) Unrotated() *Rows {
	if r.RoPE == nil {
		return r
	}
	c := *r
	c.Pos, c.RoPE = nil, nil
	return &c
}

// BlockRows is the number of rows per outlier block for rows of dim values: the most
// whose element offsets fit 16 bits.
func BlockRows(dim int) int { return 1 << 16 / dim }

// RowBytes is the number of bytes one row's packed codes take.
func (r *Rows) RowBytes() int { return PackedLen(r.Dim, r.Bits) }

// Len is the number of rows.
func (r *Rows) Len() int { return r.n }

// Outliers is the number of outliers stored.
func (r *Rows) Outliers() int { return len(r.OutIndex) }

// Bytes is the storage the rows take in their stored form (store.go): codes, ranges,
// outliers and levels (the positions of keys are the tree's, not counted).
func (r *Rows) Bytes() int { return r.storedBytes() }

// Init checks the stored fields against each other and prepares the rows for reading.
// Errors wrap ErrCorrupt.
func (r *Rows) Init() error {
	if err := r.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	copy(r.lv[:], r.Levels)
	r.lvp = kernels.KVQPeriodic(r.Levels)
	if r.Axis == PerChannel {
		nl := len(r.Levels)
		r.lut = make([]float32, r.Dim*nl)
		r.chHalf, r.chMid = make([]float32, r.Dim), make([]float32, r.Dim)
		for j, rg := range r.Channel {
			r.chHalf[j], r.chMid[j] = rg.Half, rg.Mid
			for c, l := range r.Levels {
				r.lut[j*nl+c] = rg.Restore(l)
			}
		}
		if r.groupKeys() {
			r.ranges = kernels.KVQChannelRanges(r.chHalf, r.chMid)
			if kernels.KVQQueriesLen(1, r.Dim) > 0 {
				r.ranges16 = kernels.KVQChannelRanges16(r.chHalf, r.chMid)
			}
		}
	}
	r.out, r.mids, r.halves = outlierFixes{}, nil, nil
	if r.groupKeys() || r.groupValues() {
		r.out = r.outliers()
	}
	if r.groupValues() {
		// Both converted at once (kernels.F16ToF32Slice), then taken apart.
		both := make([]float32, 2*r.n)
		kernels.F16ToF32Slice(both, r.Token)
		r.mids, r.halves = make([]float32, r.n), make([]float32, r.n)
		for i := range r.n {
			r.mids[i], r.halves[i] = both[2*i], both[2*i+1]
		}
	}
	return nil
}

func (r *Rows) check() error {
	if r.Dim < 1 || r.Dim > maxDim {
		return fmt.Errorf("dimension %d", r.Dim)
	}
	if r.Bits < MinBits || r.Bits > MaxBits {
		return fmt.Errorf("%d bits", r.Bits)
	}
	if len(r.Levels) != 1<<r.Bits {
		return fmt.Errorf("%d levels for %d bits", len(r.Levels), r.Bits)
	}
	for i, l := range r.Levels {
		if !finite32(l) {
			return fmt.Errorf("level %d is %v", i, l)
		}
	}
	rb := r.RowBytes()
	if len(r.Codes)%rb != 0 {
		return fmt.Errorf("%d code bytes are not rows of %d", len(r.Codes), rb)
	}
	n := len(r.Codes) / rb
	r.n = n
	switch r.Axis {
	case PerChannel:
		if len(r.Channel) != r.Dim || r.Token != nil {
			return fmt.Errorf("%d channel ranges and %d token ranges for rows of %d", len(r.Channel), len(r.Token)/2, r.Dim)
		}
		for j, rg := range r.Channel {
			if !finite32(rg.Mid) || !finite32(rg.Half) || rg.Half < 0 {
				return fmt.Errorf("channel %d: range %+v", j, rg)
			}
		}
	case PerToken:
		if len(r.Token) != 2*n || r.Channel != nil {
			return fmt.Errorf("%d token ranges and %d channel ranges for %d rows", len(r.Token)/2, len(r.Channel), n)
		}
		for i := 0; i < len(r.Token); i += 2 {
			if mid, half := r.Token[i], r.Token[i+1]; !finite16(mid) || !finite16(half) || negative16(half) {
				return fmt.Errorf("row %d: range %v ± %v", i/2, kernels.F16ToF32(mid), kernels.F16ToF32(half))
			}
		}
	default:
		return fmt.Errorf("axis %d", r.Axis)
	}
	br := BlockRows(r.Dim)
	blocks := (n + br - 1) / br
	if len(r.OutStart) != blocks+1 {
		return fmt.Errorf("%d outlier block offsets for %d blocks", len(r.OutStart), blocks)
	}
	if len(r.OutIndex) != len(r.OutValue) || int(r.OutStart[0]) != 0 || int(r.OutStart[blocks]) != len(r.OutIndex) {
		return fmt.Errorf("outlier offsets from %d to %d for %d indices and %d values", r.OutStart[0], r.OutStart[blocks], len(r.OutIndex), len(r.OutValue))
	}
	for b := range blocks {
		s, e := r.OutStart[b], r.OutStart[b+1]
		if e < s || int(e) > len(r.OutIndex) {
			return fmt.Errorf("outlier block %d: offsets %d to %d", b, s, e)
		}
		limit := min(br, n-b*br) * r.Dim
		for k := s; k < e; k++ {
			if int(r.OutIndex[k]) >= limit || (k > s && r.OutIndex[k] <= r.OutIndex[k-1]) {
				return fmt.Errorf("outlier block %d: index %d out of order or range", b, r.OutIndex[k])
			}
			if !finite16(r.OutValue[k]) {
				return fmt.Errorf("outlier %d is not finite", k)
			}
		}
	}
	if (r.Pos == nil) != (r.RoPE == nil) {
		return errors.New("positions without a RoPE table or the reverse")
	}
	if r.RoPE != nil {
		if len(r.Pos) != n {
			return fmt.Errorf("%d positions for %d rows", len(r.Pos), n)
		}
		if r.RoPE.HeadDim() != r.Dim {
			return fmt.Errorf("RoPE for heads of %d, rows of %d", r.RoPE.HeadDim(), r.Dim)
		}
		np := r.RoPE.Positions()
		for i, p := range r.Pos {
			if p < 0 || int(p) >= np {
				return fmt.Errorf("row %d: position %d outside the RoPE table's %d", i, p, np)
			}
		}
	}
	return nil
}

func finite32(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// finite16 reports whether the half float h is neither infinite nor NaN (its exponent
// field is not all ones).
func finite16(h uint16) bool { return h&0x7c00 != 0x7c00 }

// negative16 reports whether the half float h is below zero (negative, not −0).
func negative16(h uint16) bool { return h&0x8000 != 0 && h&0x7fff != 0 }

// outCursor walks the outliers of consecutive rows.
type outCursor struct {
	k   int // next entry
	blk int // block of entry k
	row int // row of entry k; math.MaxInt when there is none
	at  int // element offset of entry k within its row
}

// seek returns the cursor at the first outlier of row lo or later.
func (r *Rows) seek(lo int) outCursor {
	br := BlockRows(r.Dim)
	b := lo / br
	if b >= len(r.OutStart)-1 {
		return outCursor{k: len(r.OutIndex), blk: b, row: math.MaxInt}
	}
	s, e := int(r.OutStart[b]), int(r.OutStart[b+1])
	first := uint16((lo - b*br) * r.Dim)
	for s < e { // first index ≥ first
		m := (s + e) / 2
		if r.OutIndex[m] < first {
			s = m + 1
		} else {
			e = m
		}
	}
	c := outCursor{k: s, blk: b}
	r.settle(&c)
	return c
}

// settle finds the block, row and channel of the cursor's entry.
func (r *Rows) settle(c *outCursor) {
	for c.blk+1 < len(r.OutStart) && c.k >= int(r.OutStart[c.blk+1]) {
		c.blk++
	}
	if c.k >= len(r.OutIndex) {
		c.row = math.MaxInt
		return
	}
	e := int(r.OutIndex[c.k])
	c.row = c.blk*BlockRows(r.Dim) + e/r.Dim
	c.at = e % r.Dim
}

// next returns the next outlier of row i (channel and value) and advances, or ok = false
// when the row has no more. Rows must be visited in ascending order.
func (r *Rows) next(c *outCursor, i int) (ch int, v float32, ok bool) {
	if c.row != i {
		return 0, 0, false
	}
	ch, v = c.at, kernels.F16ToF32(r.OutValue[c.k])
	c.k++
	r.settle(c)
	return ch, v, true
}

// decodeDense writes row i's dense values (outliers not applied, no rotation) to dst.
func (r *Rows) decodeDense(dst []float32, codes []uint8, i int) {
	rb := r.RowBytes()
	Unpack(codes, r.Codes[i*rb:(i+1)*rb], r.Bits)
	if r.Axis == PerChannel {
		nl := len(r.Levels)
		for j, c := range codes {
			dst[j] = r.lut[j*nl+int(c)]
		}
		return
	}
	mid, half := kernels.F16ToF32(r.Token[2*i]), kernels.F16ToF32(r.Token[2*i+1])
	for j, c := range codes {
		dst[j] = mid + half*r.Levels[c]
	}
}

// decode writes row i, outliers applied and rotated to its position, to dst.
func (r *Rows) decode(dst []float32, codes []uint8, i int, c *outCursor) {
	r.decodeDense(dst, codes, i)
	r.applyOutliers(dst, i, c)
	if r.RoPE != nil {
		r.RoPE.Rotate(dst, int(r.Pos[i]))
	}
}

// applyOutliers overwrites row i's outlier channels of dst with their exact values,
// advancing c past them.
func (r *Rows) applyOutliers(dst []float32, i int, c *outCursor) {
	for {
		ch, v, ok := r.next(c, i)
		if !ok {
			return
		}
		dst[ch] = v
	}
}

// stackDim is the longest row decoded into stack buffers.
const stackDim = 256

// scratch returns a row buffer and a code buffer of r.Dim, from the given stack arrays
// when they are long enough.
func (r *Rows) scratch(f *[stackDim]float32, c *[stackDim]uint8) ([]float32, []uint8) {
	if r.Dim <= stackDim {
		return f[:r.Dim], c[:r.Dim]
	}
	return make([]float32, r.Dim), make([]uint8, r.Dim)
}

// Dequantize writes rows lo..hi−1 decoded (outliers applied, keys rotated to their
// positions) to dst, (hi−lo)·Dim values: what Dots and Accumulate read. Decoding a block
// of rows once serves every query that reads it (a matrix product over the block).
func (r *Rows) Dequantize(dst []float32, lo, hi int) {
	var fb [stackDim]float32
	var cb [stackDim]uint8
	ang, _ := r.scratch(&fb, &cb)
	c := r.seek(lo)
	d := r.Dim
	for i := lo; i < hi; i++ {
		r.decodeFast(dst[(i-lo)*d:(i-lo+1)*d], ang, i, &c)
	}
}

// decodeFast writes row i decoded to row through the kernels: codes through the ranges
// (kernels.KVQDecodeChannel or KVQDecodeToken), outliers, then the rotation to its
// position (kernels.KVQRotate); ang is scratch of at least Dim values.
func (r *Rows) decodeFast(row, ang []float32, i int, c *outCursor) {
	rb := r.RowBytes()
	src := r.Codes[i*rb : (i+1)*rb]
	if r.Axis == PerChannel && r.RoPE != nil && !r.RoPE.neox && r.RoPE.ropeDim == r.Dim {
		r.decodeRotated(row, src, i, c)
		return
	}
	if r.Axis == PerChannel {
		kernels.KVQDecodeChannel(row, src, r.Bits, &r.lv, r.chHalf, r.chMid)
	} else {
		kernels.KVQDecodeToken(row, src, r.Bits, &r.lv, kernels.F16ToF32(r.Token[2*i+1]), kernels.F16ToF32(r.Token[2*i]))
	}
	r.applyOutliers(row, i, c)
	if r.RoPE != nil {
		r.RoPE.rotate(row, ang, int(r.Pos[i]))
	}
}

// decodeRotated is decodeFast for keys with per-channel ranges and adjacent RoPE pairs
// over the whole row: decoded and rotated in one pass (kernels.KVQDecodeRotate), then the
// outliers added rotated: the difference Δ between an outlier and its dense value turns
// with its pair, (Δ·c, Δ·s) for the pair's first value, (−Δ·s, Δ·c) for its second.
func (r *Rows) decodeRotated(row []float32, src []byte, i int, c *outCursor) {
	ch, sh, cl, sl := r.RoPE.parts(int(r.Pos[i]))
	kernels.KVQDecodeRotate(row, src, r.Bits, &r.lv, r.chHalf, r.chMid, ch, sh, cl, sl)
	for {
		j, v, ok := r.next(c, i)
		if !ok {
			break
		}
		d := v - (r.chMid[j] + r.chHalf[j]*r.lv[kernels.KVQCode(src, r.Bits, j)])
		p := j / 2
		cs := ch[p]*cl[p] - sh[p]*sl[p]
		sn := sh[p]*cl[p] + ch[p]*sl[p]
		if j%2 == 0 {
			row[j] += d * cs
			row[j+1] += d * sn
		} else {
			row[j-1] -= d * sn
			row[j] += d * cs
		}
	}
}

// dequantizeRef is the reference of Dequantize: codes unpacked one by one (Unpack), then
// decoded through the ranges.
func (r *Rows) dequantizeRef(dst []float32, lo, hi int) {
	var fb [stackDim]float32
	var cb [stackDim]uint8
	_, codes := r.scratch(&fb, &cb)
	c := r.seek(lo)
	d := r.Dim
	for i := lo; i < hi; i++ {
		r.decode(dst[(i-lo)*d:(i-lo+1)*d], codes, i, &c)
	}
}

// Dots sets dst[i] = q · row(lo+i) for i < hi−lo, each row decoded as Dequantize does
// into a buffer on the stack, then dotted (kernels.KVQDot).
func (r *Rows) Dots(dst, q []float32, lo, hi int) {
	var fb, ab [stackDim]float32
	var cb [stackDim]uint8
	row, _ := r.scratch(&fb, &cb)
	ang, _ := r.scratch(&ab, &cb)
	c := r.seek(lo)
	q = q[:r.Dim]
	for i := lo; i < hi; i++ {
		r.decodeFast(row, ang, i, &c)
		dst[i-lo] = kernels.KVQDot(q, row)
	}
}

// Accumulate adds Σ_i w[i]·row(lo+i) to out (Dim values), for i < hi−lo, the rows
// decoded as Dequantize does. Values with per-token ranges add w·Half·level per code
// (kernels.KVQAxpyToken) and Σ w·Mid once, then correct the outliers.
func (r *Rows) Accumulate(out, w []float32, lo, hi int) {
	out = out[:r.Dim]
	if r.Axis != PerToken || r.RoPE != nil {
		r.accumulateRows(out, w, lo, hi)
		return
	}
	c := r.seek(lo)
	rb, bits := r.RowBytes(), r.Bits
	var offset float32
	for i := lo; i < hi; i++ {
		wi := w[i-lo]
		mid, half := kernels.F16ToF32(r.Token[2*i]), kernels.F16ToF32(r.Token[2*i+1])
		src := r.Codes[i*rb : (i+1)*rb]
		kernels.KVQAxpyToken(wi*half, src, bits, &r.lv, out)
		offset += wi * mid
		for {
			ch, v, ok := r.next(&c, i)
			if !ok {
				break
			}
			dense := mid + half*r.Levels[kernels.KVQCode(src, bits, ch)]
			out[ch] += wi * (v - dense)
		}
	}
	for j := range out {
		out[j] += offset
	}
}

// accumulateRows is Accumulate for rows other than per-token values: each row decoded,
// then added.
func (r *Rows) accumulateRows(out, w []float32, lo, hi int) {
	var fb, ab [stackDim]float32
	var cb [stackDim]uint8
	row, _ := r.scratch(&fb, &cb)
	ang, _ := r.scratch(&ab, &cb)
	c := r.seek(lo)
	for i := lo; i < hi; i++ {
		r.decodeFast(row, ang, i, &c)
		kernels.Axpy(w[i-lo], row, out)
	}
}

var _ sparse.Rows = (*Rows)(nil)
