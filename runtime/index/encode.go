package index

import (
	"encoding/binary"
	"fmt"
	"math"

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
//	20      4           w, bytes per position of Order (uint32): 2 when every position is
//	                    below 65536, else 4
//	24      4·L         clusters C_l of each level, coarse to fine (uint32, ≥ 1)
//	then for each level l, coarse to fine:
//	        4·(C_l+1)   Start (uint32): children of cluster j are [Start[j], Start[j+1])
//	                    of level l+1, or stored keys for the finest level
//	        2·C_l·dim   centroids (IEEE 754 half floats, row-major)
//	then    w·n         Order (uint16 or int32): the position of the key stored at each
//	                    index
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

// orderWidth is the bytes per position MarshalBinary writes for order.
func orderWidth(order []int32) int {
	for _, p := range order {
		if p < 0 || p > math.MaxUint16 {
			return 4
		}
	}
	return 2
}

// MarshalBinary encodes the tree in the layout documented above.
func (t *Tree) MarshalBinary() ([]byte, error) {
	w := orderWidth(t.order)
	size := headerSize + 4*len(t.levels) + w*t.n
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
	for _, v := range t.order {
		if w == 2 {
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		} else {
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
	if w != 2 && w != 4 {
		return nil, fmt.Errorf("%d bytes per position", w)
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
	if size != uint64(len(data)) {
		return nil, fmt.Errorf("%d bytes, the header implies %d", len(data), size)
	}
	off := int(headerSize + 4*nl)
	levels := make([]Level, nl)
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
		for j := range cent {
			cent[j] = kernels.F16ToF32(binary.LittleEndian.Uint16(data[off:]))
			off += 2
		}
		levels[l] = Level{Centroids: cent, Start: start}
	}
	order := make([]int32, n)
	for i := range order {
		if w == 2 {
			order[i] = int32(binary.LittleEndian.Uint16(data[off:]))
		} else {
			order[i] = int32(u32(off))
		}
		off += int(w)
	}
	if orderWidth(order) != int(w) {
		return nil, fmt.Errorf("positions of %d bytes where %d hold them", w, orderWidth(order))
	}
	return newTree(int(dim), levels, order)
}
