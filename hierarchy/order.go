package hierarchy

import (
	"cmp"
	"math"
	"slices"
)

// The order of sibling clusters. A lookup reads the keys of its selected leaf clusters,
// and selected clusters stored next to each other make one span (one stream of reads,
// one call of the attention kernels) instead of several. Clusters whose centroids point
// the same way tend to be selected together, so Build stores similar siblings side by
// side: the top level in a chain of nearest neighbours, and each parent's children in a
// chain that starts next to the previous parent's last child.

// maxChain is the largest group ordered by the nearest-neighbour chain (quadratic in the
// group's size); larger groups are sorted by their cosine with the chain's first item.
const maxChain = 4096

// unitRows returns the rows of items (rows of dim values of cent, by index) scaled to
// unit length, in the order of items; a zero row stays zero.
func unitRows(cent []float32, dim int, items []int32) [][]float64 {
	u := make([][]float64, len(items))
	for k, it := range items {
		row := cent[int(it)*dim : (int(it)+1)*dim]
		v := make([]float64, dim)
		var ss float64
		for j, x := range row {
			v[j] = float64(x)
			ss += v[j] * v[j]
		}
		if ss > 0 {
			inv := 1 / math.Sqrt(ss)
			for j := range v {
				v[j] *= inv
			}
		}
		u[k] = v
	}
	return u
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// chainOrder returns items (cluster indices into cent, rows of dim values) reordered so
// that each is followed by its most similar (cosine) remaining one, starting from the item
// most similar to after (a unit direction; nil: the item least aligned with the group's
// mean, an end of the group). Ties go to the earlier item, so the order depends only on
// the input. Groups larger than maxChain are sorted by their cosine with that start
// instead.
func chainOrder(items []int32, cent []float32, dim int, after []float64) []int32 {
	n := len(items)
	if n <= 1 {
		return items
	}
	u := unitRows(cent, dim, items)
	start := 0
	if after != nil {
		best := math.Inf(-1)
		for k, v := range u {
			if c := dot64(v, after); c > best {
				best, start = c, k
			}
		}
	} else {
		mean := make([]float64, dim)
		for _, v := range u {
			for j, x := range v {
				mean[j] += x
			}
		}
		best := math.Inf(1)
		for k, v := range u {
			if c := dot64(v, mean); c < best {
				best, start = c, k
			}
		}
	}
	out := make([]int32, 0, n)
	if n > maxChain {
		idx := make([]int, n)
		key := make([]float64, n)
		for k, v := range u {
			idx[k], key[k] = k, -dot64(v, u[start])
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(key[a], key[b]) })
		for _, k := range idx {
			out = append(out, items[k])
		}
		return out
	}
	used := make([]bool, n)
	cur := start
	for {
		used[cur] = true
		out = append(out, items[cur])
		if len(out) == n {
			return out
		}
		next, best := -1, math.Inf(-1)
		for k, v := range u {
			if !used[k] {
				if c := dot64(u[cur], v); c > best {
					best, next = c, k
				}
			}
		}
		cur = next
	}
}
