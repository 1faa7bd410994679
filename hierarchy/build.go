package hierarchy

import (
	"context"
	"fmt"
	"math"
	"slices"
	"squeeze/runtime/index"

	"squeeze/kmeans"
)

// DefaultFractions are the clusters per level as a fraction of the keys, coarse to fine:
// the paper's hierarchical setting (1 % and 5 %).
var DefaultFractions = []float64{0.01, 0.05}

// Config tunes Build. The zero value is usable.
type Config struct {
	// Fractions gives the number of clusters of each level as a fraction of the number of
	// keys, coarse to fine, each in (0, 1] and strictly increasing; a level gets
	// round(f·n) clusters, at least 1 and at most the level below. Nil means
	// DefaultFractions; one value builds a flat (one-level) index.
	Fractions []float64
	// Seed seeds k-means.
	Seed uint64
	// Threads is the number of goroutines k-means uses; 0 means GOMAXPROCS. The tree does
	// not depend on it.
	Threads int
	// MaxIter and BlockSize are passed to k-means (0 means its defaults).
	MaxIter, BlockSize int
}

// Build clusters the n = len(keys)/dim keys (row-major n × dim, post-RoPE, one KV head)
// into a tree; see the package documentation. positions holds the position of each key
// (distinct, non-negative) and is what Order reports; nil means 0..n−1, so that Order
// gives key indices. keys and positions are not retained.
//
// Errors wrap ErrInvalid (bad shapes, positions or fractions, n = 0), kmeans.ErrInvalid
// (non-finite keys) or ctx.Err().
func Build(ctx context.Context, keys []float32, dim int, positions []int32, cfg Config) (*index.Tree, error) {
	if dim < 1 || len(keys)%dim != 0 || len(keys) == 0 {
		return nil, fmt.Errorf("%w: %d key values in rows of %d", ErrInvalid, len(keys), dim)
	}
	n := len(keys) / dim
	if n > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %d keys", ErrInvalid, n)
	}
	if positions == nil {
		positions = make([]int32, n)
		for i := range positions {
			positions[i] = int32(i)
		}
	} else if len(positions) != n {
		return nil, fmt.Errorf("%w: %d positions for %d keys", ErrInvalid, len(positions), n)
	}
	fr := cfg.Fractions
	if fr == nil {
		fr = DefaultFractions
	}
	if len(fr) == 0 {
		return nil, fmt.Errorf("%w: no levels", ErrInvalid)
	}
	for l, f := range fr {
		if !(f > 0 && f <= 1) || (l > 0 && !(f > fr[l-1])) {
			return nil, fmt.Errorf("%w: fractions %v must increase within (0, 1]", ErrInvalid, fr)
		}
	}
	L := len(fr)
	opt := kmeans.Options{Seed: cfg.Seed, Threads: cfg.Threads, MaxIter: cfg.MaxIter, BlockSize: cfg.BlockSize}

	// Cluster bottom-up: labels[l][j] is the level-l cluster of level-(l+1) cluster j
	// (of key j for the finest level).
	res := make([]*kmeans.Result, L)
	data, counts := keys, []float32(nil)
	below := n
	for l := L - 1; l >= 0; l-- {
		k := min(below, max(1, int(math.Round(fr[l]*float64(n)))))
		opt.Weights = counts
		r, err := kmeans.Spherical(ctx, data, dim, k, opt)
		if err != nil {
			return nil, fmt.Errorf("cluster level %d: %w", l, err)
		}
		res[l] = r
		// The next level up clusters these centroids, weighted by their keys.
		next := make([]float32, r.K)
		for i, lab := range r.Labels {
			w := float32(1)
			if counts != nil {
				w = counts[i]
			}
			next[lab] += w
		}
		data, counts, below = r.Centroids, next, r.K
	}

	// Renumber top-down so that siblings are contiguous and similar clusters adjacent
	// (order.go): perm[l][new] = old index.
	levels := make([]index.Level, L)
	perm := make([]int32, res[0].K)
	for j := range perm {
		perm[j] = int32(j)
	}
	perm = chainOrder(perm, res[0].Centroids, dim, nil)
	for l := range L {
		r := res[l]
		// inv: old cluster index of level l → new index.
		inv := make([]int32, r.K)
		for nw, old := range perm {
			inv[old] = int32(nw)
		}
		var parentOf func(i int) int32 // new cluster of level l of child i (old numbering)
		parentOf = func(i int) int32 { return inv[r.Labels[i]] }
		children := make([]int32, len(r.Labels))
		for i := range children {
			children[i] = int32(i)
		}
		slices.SortStableFunc(children, func(a, b int32) int { return int(parentOf(int(a)) - parentOf(int(b))) })
		start := make([]int32, r.K+1)
		for _, c := range children {
			start[parentOf(int(c))+1]++
		}
		for j := range r.K {
			start[j+1] += start[j]
		}
		if l+1 < L {
			// Each parent's children (clusters of level l+1) in a chain that starts
			// next to the previous parent's last child (order.go).
			below := res[l+1].Centroids
			var after []float64
			for j := range r.K {
				group := children[start[j]:start[j+1]]
				if len(group) == 0 {
					continue
				}
				copy(group, chainOrder(group, below, dim, after))
				after = unitRows(below, dim, group[len(group)-1:])[0]
			}
		}
		cent := make([]float32, r.K*dim)
		for nw, old := range perm {
			copy(cent[nw*dim:(nw+1)*dim], r.Centroids[int(old)*dim:(int(old)+1)*dim])
		}
		levels[l] = index.Level{Centroids: cent, Start: start}
		perm = children
	}
	order := make([]int32, n)
	for i, key := range perm {
		order[i] = positions[key]
	}
	t, err := index.New(dim, levels, order)
	if err != nil {
		return nil, fmt.Errorf("%w: positions: %w", ErrInvalid, err)
	}
	return t, nil
}
