package index

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"squeeze/runtime/kernels"
)

// Errors. Decoding wraps ErrCorrupt; bad arguments to Build, New or Calibrate wrap
// ErrInvalid.
var (
	ErrCorrupt = errors.New("index: corrupt tree")
	ErrInvalid = errors.New("index: invalid input")
)

// Tree is the centroid tree over one (layer, KV head)'s keys. It is immutable and safe for
// concurrent use; slices returned by its methods are shared and must not be modified.
type Tree struct {
	dim    int
	n      int
	levels []level
	order  []int32
	scale  float32 // 1/√dim
}

// level is one level of the tree, coarse (0) to fine (len−1).
type level struct {
	cent     []float32 // clusters × dim, raw means
	start    []int32   // clusters+1: children (keys for the finest level) of cluster j are [start[j], start[j+1])
	count    []int32   // keys under each cluster
	logCount []float32 // log(count), −Inf for empty clusters
	maxAbs   float32   // the largest |centroid value|
	// cent16 holds the centroids in half precision for the lookup's fast path (half
	// the memory reads; exact for trees decoded from an artifact, which stores them so),
	// or nil if one is beyond the half-precision range.
	cent16 []uint16
}

// maxHalf is the largest finite half-precision value.
const maxHalf = 65504

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// Level describes one level of a tree for New: Centroids holds len(Start)−1 rows of dim
// values; the children of cluster j are the clusters [Start[j], Start[j+1]) of the next
// finer level, or, for the finest level, the keys stored at [Start[j], Start[j+1]).
type Level struct {
	Centroids []float32
	Start     []int32
}

// New builds a tree from its parts after checking them: dim ≥ 1; at least one level;
// every Start begins at 0, never decreases and ends at the next level's cluster count
// (the number of keys, len(order) ≥ 1, for the finest level); centroids are finite and
// have the right length; order holds distinct non-negative positions. Clusters may be
// empty. The slices are retained. Errors wrap ErrInvalid.
func New(dim int, levels []Level, order []int32) (*Tree, error) {
	t, err := newTree(dim, levels, order)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return t, nil
}

func newTree(dim int, levels []Level, order []int32) (*Tree, error) {
	if dim < 1 {
		return nil, fmt.Errorf("dimension %d", dim)
	}
	if len(levels) == 0 {
		return nil, errors.New("no levels")
	}
	n := len(order)
	if n == 0 {
		return nil, errors.New("no keys")
	}
	t := &Tree{dim: dim, n: n, order: order, levels: make([]level, len(levels)), scale: float32(1 / math.Sqrt(float64(dim)))}
	for l, lv := range levels {
		c := len(lv.Start) - 1
		if c < 1 {
			return nil, fmt.Errorf("level %d: %d offsets", l, len(lv.Start))
		}
		if len(lv.Centroids) != c*dim {
			return nil, fmt.Errorf("level %d: %d centroid values for %d clusters of dimension %d", l, len(lv.Centroids), c, dim)
		}
		below := n
		if l+1 < len(levels) {
			below = len(levels[l+1].Start) - 1
		}
		if lv.Start[0] != 0 || int(lv.Start[c]) != below {
			return nil, fmt.Errorf("level %d: offsets run from %d to %d, want 0 to %d", l, lv.Start[0], lv.Start[c], below)
		}
		for j := range c {
			if lv.Start[j+1] < lv.Start[j] {
				return nil, fmt.Errorf("level %d: offset %d decreases", l, j+1)
			}
		}
		var maxAbs float32
		for i, v := range lv.Centroids {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("level %d: centroid %d is not finite", l, i/dim)
			}
			maxAbs = max(maxAbs, abs32(v))
		}
		t.levels[l] = level{cent: lv.Centroids, start: lv.Start, count: make([]int32, c), logCount: make([]float32, c), maxAbs: maxAbs}
		if maxAbs <= maxHalf {
			t.levels[l].cent16 = make([]uint16, len(lv.Centroids))
			kernels.F32ToF16Slice(t.levels[l].cent16, lv.Centroids)
		}
	}
	if err := distinct(order); err != nil {
		return nil, err
	}
	for l := len(t.levels) - 1; l >= 0; l-- {
		lv := &t.levels[l]
		for j := range lv.count {
			lo, hi := lv.start[j], lv.start[j+1]
			if l == len(t.levels)-1 {
				lv.count[j] = hi - lo
			} else {
				for _, c := range t.levels[l+1].count[lo:hi] {
					lv.count[j] += c
				}
			}
			lv.logCount[j] = float32(math.Log(float64(lv.count[j])))
		}
	}
	return t, nil
}

// distinct reports a negative position, or one that appears twice. Positions of a
// context run from 0 to about its length: a bitmap of them takes n/8 bytes or so; past
// 64 positions per key (a corrupt or unusual order), sorting a copy does.
func distinct(order []int32) error {
	top := int32(0)
	for _, p := range order {
		if p < 0 {
			return fmt.Errorf("negative position %d", p)
		}
		top = max(top, p)
	}
	if int64(top) >= 64*int64(len(order)) {
		sorted := slices.Clone(order)
		slices.Sort(sorted)
		for i := 1; i < len(sorted); i++ {
			if sorted[i] == sorted[i-1] {
				return fmt.Errorf("position %d appears twice", sorted[i])
			}
		}
		return nil
	}
	seen := make([]uint64, int(top)/64+1)
	for _, p := range order {
		w, bit := p/64, uint64(1)<<(p%64)
		if seen[w]&bit != 0 {
			return fmt.Errorf("position %d appears twice", p)
		}
		seen[w] |= bit
	}
	return nil
}

// Dim returns the dimension of the keys.
func (t *Tree) Dim() int { return t.dim }

// Len returns the number of keys.
func (t *Tree) Len() int { return t.n }

// Levels returns the number of levels.
func (t *Tree) Levels() int { return len(t.levels) }

// Clusters returns the number of clusters of level l (0 is the coarsest).
func (t *Tree) Clusters(l int) int { return len(t.levels[l].count) }

// Centroids returns level l's centroids, Clusters(l) rows of Dim() values, each the mean
// of the raw keys under its cluster.
func (t *Tree) Centroids(l int) []float32 { return t.levels[l].cent }

// Counts returns the number of keys under each cluster of level l.
func (t *Tree) Counts(l int) []int32 { return t.levels[l].count }

// Start returns level l's Clusters(l)+1 offsets: the children of cluster j are the
// clusters [Start[j], Start[j+1]) of level l+1, or, for the finest level, the keys stored
// at [Start[j], Start[j+1]).
func (t *Tree) Start(l int) []int32 { return t.levels[l].start }

// Order returns the position of the key stored at each storage index.
func (t *Tree) Order() []int32 { return t.order }
