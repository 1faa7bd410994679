package index

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"squeeze/runtime/kernels"
)

// Binary layout of a tree (MarshalBinary), all integers little-endian:
//
//	offset  size        field
//	0       4           magic "SQZT"
//	4       4           version (uint32, currently 2)
//	8       4           dim (uint32, ≥ 1)
//	12      4           levels L (uint32, ≥ 1)
//	16      4           keys n (uint32, ≥ 1)
//	20      4           w, how Order is stored (uint32): 0 by deltas, where the positions
//	                    ascend within every cluster of the finest level; else 2 when every
//	                    position is below 65536; else 4
//	24      4·L         clusters C_l of each level, coarse to fine (uint32, ≥ 1)
//	then for each level l, coarse to fine:
//	        4·(C_l+1)   Start (uint32): children of cluster j are [Start[j], Start[j+1])
//	                    of level l+1, or stored keys for the finest level
//	        2·C_l·dim   centroids (IEEE 754 half floats, row-major)
//	then    Order: the position of the key stored at each index: w = 2 or 4, each as
//	        w·n         a uint16 or int32; w = 0, for each finest cluster in turn, its
//	                    first position as a uvarint, then each next one as a uvarint of
//	                    its difference from the one before (≥ 1), every uvarint in its
//	                    shortest form
//
// Counts are not stored: they follow from Start. The input must be exactly this long.
// Centroids are rounded to half floats (the nearest, ties to even) when encoded: a decoded
// tree scores queries against the rounded centroids.
const (
	magic   = "SQZT"
	version = 2

	// maxDim and maxLevels bound header values before anything is allocated.
	maxDim    = 1 << 16
	maxLevels = 64

	headerSize = 24
)

// orderWidth is how MarshalBinary writes order, stored in clusters delimited by start (the
// finest level's Start): 0 (deltas), 2 or 4 (bytes a position).
func orderWidth(order, start []int32) int {
	ascending := true
	for j := 0; j+1 < len(start) && ascending; j++ {
		for i := start[j] + 1; i < start[j+1]; i++ {
			if order[i] <= order[i-1] {
				ascending = false
				break
			}
		}
	}
	if ascending {
		return 0
	}
	for _, p := range order {
		if p < 0 || p > math.MaxUint16 {
			return 4
		}
	}
	return 2
}

// MarshalBinary encodes the tree in the layout documented above.
func (t *Tree) MarshalBinary() ([]byte, error) {
	finest := t.levels[len(t.levels)-1].start
	w := orderWidth(t.order, finest)
	size := headerSize + 4*len(t.levels) + max(w, 2)*t.n
	for _, lv := range t.levels {
		size += 4*len(lv.start) + 2*len(lv.cent)
	}
	b := make([]byte, 0, size)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(t.dim))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(t.levels)))
	b = binary.LittleEndian.AppendUint32(b, uint32(t.n))
	b = binary.LittleEndian.AppendUint32(b, uint32(w))
	for _, lv := range t.levels {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(lv.count)))
	}
	for _, lv := range t.levels {
		for _, v := range lv.start {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
		for _, v := range lv.cent {
			b = binary.LittleEndian.AppendUint16(b, kernels.F32ToF16(v))
		}
	}
	switch w {
	case 0:
		for j := 0; j+1 < len(finest); j++ {
			prev := int32(0)
			for i := finest[j]; i < finest[j+1]; i++ {
				b = binary.AppendUvarint(b, uint64(t.order[i]-prev))
				prev = t.order[i]
			}
		}
	case 2:
		for _, v := range t.order {
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		}
	default:
		for _, v := range t.order {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
	}
	return b, nil
}

// UnmarshalBinary decodes a tree written by MarshalBinary into t, replacing its contents.
// Every length, offset, child range, centroid and position is checked; bad input gives
// an error wrapping ErrCorrupt and leaves t unchanged.
func (t *Tree) UnmarshalBinary(data []byte) error {
	nt, err := decode(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	*t = *nt
	return nil
}

func decode(data []byte) (*Tree, error) {
	if len(data) < headerSize {
		return nil, fmt.Errorf("%d bytes, shorter than the header", len(data))
	}
	if string(data[:4]) != magic {
		return nil, fmt.Errorf("bad magic %q", data[:4])
	}
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(data[off:]) }
	if v := u32(4); v != version {
		return nil, fmt.Errorf("unsupported version %d", v)
	}
	dim, nl, n, w := uint64(u32(8)), uint64(u32(12)), uint64(u32(16)), uint64(u32(20))
	if dim < 1 || dim > maxDim {
		return nil, fmt.Errorf("dimension %d", dim)
	}
	if nl < 1 || nl > maxLevels {
		return nil, fmt.Errorf("%d levels", nl)
	}
	if n < 1 || n > math.MaxInt32 {
		return nil, fmt.Errorf("%d keys", n)
	}
	if w != 0 && w != 2 && w != 4 {
		return nil, fmt.Errorf("order form %d", w)
	}
	if uint64(len(data)) < headerSize+4*nl {
		return nil, fmt.Errorf("%d bytes, shorter than the level table", len(data))
	}
	// Every count is at most 2³²−1 and there are at most maxLevels levels, so this sum
	// cannot overflow a uint64.
	size := headerSize + 4*nl + w*n
	clusters := make([]uint64, nl)
	for l := range clusters {
		clusters[l] = uint64(u32(headerSize + 4*l))
		if clusters[l] < 1 {
			return nil, fmt.Errorf("level %d has no clusters", l)
		}
		size += 4*(clusters[l]+1) + 2*clusters[l]*dim
	}
	// By deltas, every position takes at least a byte.
	if w == 0 && size+n > uint64(len(data)) || w != 0 && size != uint64(len(data)) {
		return nil, fmt.Errorf("%d bytes, the header implies %d", len(data), size)
	}
	off := int(headerSize + 4*nl)
	levels := make([]Level, nl)
	var half []uint16 // a level's centroids as stored, converted at once
	for l, c := range clusters {
		start := make([]int32, c+1)
		for j := range start {
			v := u32(off)
			if v > math.MaxInt32 {
				return nil, fmt.Errorf("level %d offset %d is %d (at byte %d)", l, j, v, off)
			}
			start[j] = int32(v)
			off += 4
		}
		cent := make([]float32, c*dim)
		if len(half) < len(cent) {
			half = make([]uint16, len(cent))
		}
		for j := range cent {
			half[j] = binary.LittleEndian.Uint16(data[off:])
			off += 2
		}
		kernels.F16ToF32Slice(cent, half[:len(cent)])
		levels[l] = Level{Centroids: cent, Start: start}
	}
	order := make([]int32, n)
	finest := levels[nl-1].Start
	if w == 0 {
		if err := decodeDeltas(order, finest, data[off:]); err != nil {
			return nil, err
		}
	} else {
		for i := range order {
			if w == 2 {
				order[i] = int32(binary.LittleEndian.Uint16(data[off:]))
			} else {
				order[i] = int32(u32(off))
			}
			off += int(w)
		}
		if finest[0] == 0 && slices.IsSorted(finest) && finest[len(finest)-1] == int32(n) && orderWidth(order, finest) != int(w) {
			return nil, fmt.Errorf("order stored in form %d, not %d", w, orderWidth(order, finest))
		}
	}
	return newTree(int(dim), levels, order)
}

// decodeDeltas decodes an order stored by deltas (form 0) from data, which it must use up:
// the clusters delimited by start, each its first position, then differences ≥ 1.
func decodeDeltas(order, start []int32, data []byte) error {
	if start[0] != 0 || !slices.IsSorted(start) || int(start[len(start)-1]) != len(order) {
		return fmt.Errorf("finest offsets from %d to %d for %d keys", start[0], start[len(start)-1], len(order))
	}
	off := 0
	for j := 0; j+1 < len(start); j++ {
		prev := uint64(0)
		for i := start[j]; i < start[j+1]; i++ {
			v, k := binary.Uvarint(data[off:])
			if k <= 0 || k != uvarintLen(v) {
				return fmt.Errorf("position %d: bad uvarint at byte %d of the order", i, off)
			}
			off += k
			if (i > start[j] && v == 0) || v > math.MaxInt32-prev {
				return fmt.Errorf("position %d: difference %d after %d", i, v, prev)
			}
			prev += v
			order[i] = int32(prev)
		}
	}
	if off != len(data) {
		return fmt.Errorf("%d bytes after the order", len(data)-off)
	}
	return nil
}

// uvarintLen is the length of v's shortest uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}
