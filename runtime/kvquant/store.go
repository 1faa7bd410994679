package kvquant

import (
	"fmt"
	"math"
	"sync"

	"squeeze/runtime/kernels"
)

// The stored form of Rows is more compact than the fields Init reads: per-token ranges
// take 2 bytes a row on a grid (RangeGrid) instead of two half floats, and outlier
// elements are coded by their gaps, about a byte each (EncodeOutliers), instead of a
// 16-bit index and 32-bit block offsets. Package format writes and reads this form; the
// functions below convert it from and to the fields of Rows.

// Grid of per-token ranges. A row's Half is a half float on a logarithmic grid of 32
// steps per octave, Half(j) = 2^(j/32) rounded up to a half float, and its Mid a multiple
// of Half/64 rounded to a half float, at most 127 of them from 0: a row's range is two
// bytes, the step qh = j − base of its Half (base shared by the rows, qh in 1..255; 0 for
// Half = 0) and qm, the signed multiple of Half/64 of its Mid. The range Quantize gives a
// row is the grid range of smallest Half that holds the row's dense values, so the rows'
// codes are those of the stored ranges.
const (
	gridSteps = 32        // Half steps per octave
	gridMid   = 64        // Mid steps per Half
	gridMinJ  = -24 * 32  // 2^-24, the least half float
	gridMaxJ  = 16*32 - 1 // 2^(511/32) ≈ 64156, below the largest half float
	gridSpan  = 255       // qh in 1..gridSpan
	gridMaxQM = 127       // |qm| at most
	escapeGap = 255       // outlier gap byte that skips 255 elements
)

// octave holds 2^(f/32) for f < 32, rounded to float32 (literal, so that every platform
// decodes the same grid).
var octave = [gridSteps]float32{
	1.0, 1.0218971967697144, 1.0442737340927124, 1.0671404600143433, 1.0905077457427979,
	1.114386796951294, 1.1387885808944702, 1.1637248992919922, 1.1892070770263672,
	1.215247392654419, 1.2418577671051025, 1.2690509557724, 1.2968395948410034,
	1.3252366781234741, 1.3542555570602417, 1.3839099407196045, 1.4142135381698608,
	1.4451807737350464, 1.4768261909484863, 1.5091644525527954, 1.5422108173370361,
	1.5759809017181396, 1.610490322113037, 1.6457555294036865, 1.6817928552627563,
	1.7186193466186523, 1.7562521696090698, 1.7947090864181519, 1.8340080976486206,
	1.8741676807403564, 1.9152065515518188, 1.9571441411972046,
}

// gridHalf returns grid step j's Half as half-float bits: 2^(j/32) rounded up to a half
// float. j must be in [gridMinJ, gridMaxJ].
func gridHalf(j int) uint16 { return gridHalves()[j-gridMinJ] }

// gridHalves holds gridHalf of every step, computed once (gridHalfOf).
var gridHalves = sync.OnceValue(func() *[gridMaxJ - gridMinJ + 1]uint16 {
	var t [gridMaxJ - gridMinJ + 1]uint16
	for j := gridMinJ; j <= gridMaxJ; j++ {
		t[j-gridMinJ] = gridHalfOf(j)
	}
	return &t
})

// gridHalfOf computes gridHalf(j).
func gridHalfOf(j int) uint16 {
	e := j >> 5 // floor(j/32)
	v := float32(math.Ldexp(float64(octave[j-e*gridSteps]), e))
	h := kernels.F32ToF16(v)
	if kernels.F16ToF32(h) < v {
		h++
	}
	return h
}

// gridMidBits returns the half-float bits of Mid = qm·half/64, rounded to a half float.
func gridMidBits(qm int, half float32) uint16 {
	return kernels.F32ToF16(float32(qm) * (half * (1.0 / gridMid)))
}

// gridStep returns the smallest grid step j whose Half is at least need (> 0), or
// gridMaxJ+1 when none is.
func gridStep(need float32) int {
	if need <= kernels.F16ToF32(gridHalf(gridMinJ)) {
		return gridMinJ
	}
	j := int(math.Floor(gridSteps*math.Log2(float64(need)))) - 1
	j = max(j, gridMinJ)
	for j <= gridMaxJ && kernels.F16ToF32(gridHalf(j)) < need {
		j++
	}
	return j
}

// gridRange returns the grid range of smallest Half that normalizes lo and hi (lo ≤ hi)
// into [−1, 1], with Half at step floor or above, and its step; ok is false when there is
// none (values beyond the grid) or lo = hi ≠ 0, which only a zero Half holds exactly.
func gridRange(lo, hi float32, floor int) (r Range, j int, ok bool) {
	if lo == 0 && hi == 0 {
		return Range{}, 0, true
	}
	if lo == hi {
		return Range{}, 0, false
	}
	need := (hi - lo) / 2
	center := lo/2 + hi/2
	// |Mid| ≤ 127/64·Half and |center − Mid| ≤ Half − need bound Half from below.
	lower := max(need, (abs32(center)+need)/(1+gridMaxQM/float32(gridMid)))
	for j = max(gridStep(lower), floor); j <= gridMaxJ; j++ {
		half := kernels.F16ToF32(gridHalf(j))
		q := int(math.Round(float64(center / (half / gridMid))))
		for _, qm := range [3]int{q, q - 1, q + 1} {
			if qm < -gridMaxQM || qm > gridMaxQM {
				continue
			}
			r = Range{Mid: kernels.F16ToF32(gridMidBits(qm, half)), Half: half}
			if r.Normalize(hi) <= 1 && r.Normalize(lo) >= -1 {
				return r, j, true
			}
		}
	}
	return Range{}, 0, false
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// gridRanges returns the ranges of rows whose dense values span lo[i]..hi[i] (lo[i] >
// hi[i] for a row without dense values, which gets Range{}): grid ranges (gridRange)
// whose steps lie within gridSpan of each other, raising the smallest where they spread
// wider, so that EncodeTokenRanges stores them in 2 bytes a row; where that fails (a
// constant nonzero row, values beyond the grid), every row gets halfRange's half-float
// range instead, stored as two half floats.
func gridRanges(lo, hi []float32) []Range {
	ranges := make([]Range, len(lo))
	steps := make([]int, len(lo))
	floor := gridMinJ
	for range 8 {
		top := math.MinInt
		for i := range lo {
			if lo[i] > hi[i] {
				ranges[i], steps[i] = Range{}, math.MaxInt
				continue
			}
			r, j, ok := gridRange(lo[i], hi[i], floor)
			if !ok {
				return halfRanges(lo, hi)
			}
			if r.Half == 0 {
				j = math.MaxInt
			} else {
				top = max(top, j)
			}
			ranges[i], steps[i] = r, j
		}
		if top == math.MinInt || top-floor < gridSpan {
			return ranges
		}
		low := top - (gridSpan - 1)
		spread := false
		for _, j := range steps {
			spread = spread || j < low
		}
		if !spread {
			return ranges
		}
		floor = low
	}
	return halfRanges(lo, hi)
}

// halfRanges is gridRanges' fallback: halfRange of every row with dense values.
func halfRanges(lo, hi []float32) []Range {
	ranges := make([]Range, len(lo))
	for i := range lo {
		if lo[i] <= hi[i] {
			ranges[i] = halfRange(lo[i], hi[i])
		}
	}
	return ranges
}

// EncodeTokenRanges returns the stored form of per-token ranges (Rows.Token: Mid and Half
// of each row as half floats): base and 2 bytes a row (step qh = j − base of Half, then qm
// as a signed byte), ok = false when some range is not on the grid or the steps spread
// over more than 255 (the ranges are then stored as they are).
func EncodeTokenRanges(token []uint16) (base int, codes []byte, ok bool) {
	n := len(token) / 2
	steps := make([]int, n)
	lo, hi := math.MaxInt, math.MinInt
	for i := range n {
		half := kernels.F16ToF32(token[2*i+1])
		if token[2*i+1] == 0 {
			if token[2*i] != 0 {
				return 0, nil, false
			}
			steps[i] = math.MinInt
			continue
		}
		if !(half > 0) || !finite32(half) {
			return 0, nil, false
		}
		j := gridStep(half)
		if j > gridMaxJ || gridHalf(j) != token[2*i+1] {
			return 0, nil, false
		}
		steps[i] = j
		lo, hi = min(lo, j), max(hi, j)
	}
	if hi == math.MinInt {
		lo, hi = 0, 0
	}
	base = hi - gridSpan
	if lo <= base {
		return 0, nil, false
	}
	codes = make([]byte, 2*n)
	for i, j := range steps {
		if j == math.MinInt {
			continue
		}
		half := kernels.F16ToF32(token[2*i+1])
		mid := kernels.F16ToF32(token[2*i])
		q := int(math.Round(float64(mid / (half / gridMid))))
		found := false
		for _, qm := range [3]int{q, q - 1, q + 1} {
			if qm >= -gridMaxQM && qm <= gridMaxQM && gridMidBits(qm, half) == token[2*i] {
				codes[2*i], codes[2*i+1] = byte(j-base), byte(int8(qm))
				found = true
				break
			}
		}
		if !found {
			return 0, nil, false
		}
	}
	return base, codes, true
}

// DecodeTokenRanges is the inverse of EncodeTokenRanges: the rows' Mid and Half as half
// floats. Errors (a step off the grid, a code past the range of qm, a nonzero Mid with a
// zero Half, an odd length) wrap ErrCorrupt.
func DecodeTokenRanges(base int, codes []byte) ([]uint16, error) {
	if len(codes)%2 != 0 {
		return nil, fmt.Errorf("%w: %d range bytes", ErrCorrupt, len(codes))
	}
	token := make([]uint16, len(codes))
	for i := 0; i < len(codes); i += 2 {
		qh, qm := int(codes[i]), int(int8(codes[i+1]))
		if qh == 0 {
			if qm != 0 {
				return nil, fmt.Errorf("%w: row %d: mid %d with a zero half", ErrCorrupt, i/2, qm)
			}
			continue
		}
		j := base + qh
		if j < gridMinJ || j > gridMaxJ || qm < -gridMaxQM {
			return nil, fmt.Errorf("%w: row %d: range step %d, mid %d", ErrCorrupt, i/2, j, qm)
		}
		h := gridHalf(j)
		token[i], token[i+1] = gridMidBits(qm, kernels.F16ToF32(h)), h
	}
	return token, nil
}

// EncodeOutliers returns the stored form of outlier positions (Rows.OutStart and
// OutIndex for rows of dim values): the gap before each outlier element, counted from
// the element after the previous one (from element 0 for the first), as one byte below
// 255; a byte 255 skips 255 elements without an outlier. It never ends with 255.
func EncodeOutliers(start []uint32, index []uint16, dim int) []byte {
	var gaps []byte
	br := BlockRows(dim)
	next := 0
	for b := 0; b+1 < len(start); b++ {
		for k := start[b]; k < start[b+1]; k++ {
			e := b*br*dim + int(index[k])
			g := e - next
			for ; g >= escapeGap; g -= escapeGap {
				gaps = append(gaps, escapeGap)
			}
			gaps = append(gaps, byte(g))
			next = e + 1
		}
	}
	return gaps
}

// DecodeOutliers is the inverse of EncodeOutliers for n rows of dim values and count
// outliers: Rows.OutStart and OutIndex. Errors (a count that disagrees, an element past
// the rows, a trailing skip) wrap ErrCorrupt.
func DecodeOutliers(gaps []byte, n, dim, count int) (start []uint32, index []uint16, err error) {
	if dim < 1 || dim > maxDim || n < 0 {
		return nil, nil, fmt.Errorf("%w: %d rows of %d", ErrCorrupt, n, dim)
	}
	if count < 0 || count > len(gaps) {
		return nil, nil, fmt.Errorf("%w: %d outliers in %d gap bytes", ErrCorrupt, count, len(gaps))
	}
	if len(gaps) > 0 && gaps[len(gaps)-1] == escapeGap {
		return nil, nil, fmt.Errorf("%w: outlier gaps end with a skip", ErrCorrupt)
	}
	br := BlockRows(dim)
	blocks := (n + br - 1) / br
	start = make([]uint32, 1, blocks+1)
	index = make([]uint16, 0, count)
	total := n * dim
	next := 0
	for _, g := range gaps {
		next += int(g)
		if g == escapeGap {
			continue
		}
		if next >= total {
			return nil, nil, fmt.Errorf("%w: outlier element %d past %d rows of %d", ErrCorrupt, next, n, dim)
		}
		b := next / (br * dim)
		for len(start) <= b {
			start = append(start, uint32(len(index)))
		}
		index = append(index, uint16(next-b*br*dim))
		next++
	}
	if len(index) != count {
		return nil, nil, fmt.Errorf("%w: %d outlier positions for %d values", ErrCorrupt, len(index), count)
	}
	for len(start) <= blocks {
		start = append(start, uint32(len(index)))
	}
	return start, index, nil
}

// storedBytes is the size of r's stored form: codes, ranges (per-token ones on the grid
// at 2 bytes a row, else 4), outlier gaps and values, and levels.
func (r *Rows) storedBytes() int {
	n := len(r.Codes) + 8*len(r.Channel) + 2*len(r.OutValue) + 4*len(r.Levels)
	if _, codes, ok := EncodeTokenRanges(r.Token); ok {
		n += len(codes)
	} else {
		n += 2 * len(r.Token)
	}
	return n + len(EncodeOutliers(r.OutStart, r.OutIndex, r.Dim))
}
