package kmeans

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// Result1D is an optimal weighted 1-D clustering.
type Result1D struct {
	// Centers holds the cluster centres in ascending order: the weighted means of their
	// clusters. There are min(k, number of distinct values of positive weight) of them.
	Centers []float64
	// Labels[i] is the index in Centers of the centre nearest to values[i] (the lower one
	// on ties); for values of positive weight it is the cluster of the optimum.
	Labels []int32
	// Cost is the optimum Σ weights[i]·(values[i] − Centers[Labels[i]])².
	Cost float64
}

// Weighted1D returns the exact minimiser of the weighted within-cluster sum of squares of
// values split into at most k clusters. weights, if not nil, holds one non-negative finite
// weight per value (nil means all 1); values of weight zero do not influence the centres
// but are labelled. Equal values are merged first; the dynamic programme over the m
// distinct values costs O(k·m·log m) time and O(k·m) memory (monotone split points, divide
// and conquer). n = 0 gives an empty result.
//
// It returns an error wrapping ErrInvalid for non-finite values, bad weights, k < 1 or a
// zero total weight, and ctx.Err() if ctx is cancelled.
func Weighted1D(ctx context.Context, values, weights []float64, k int) (*Result1D, error) {
	if k < 1 {
		return nil, fmt.Errorf("%w: k = %d", ErrInvalid, k)
	}
	if weights != nil && len(weights) != len(values) {
		return nil, fmt.Errorf("%w: %d weights for %d values", ErrInvalid, len(weights), len(values))
	}
	n := len(values)
	res := &Result1D{Labels: make([]int32, n)}
	if n == 0 {
		return res, nil
	}
	w := func(i int) float64 {
		if weights == nil {
			return 1
		}
		return weights[i]
	}
	idx := make([]int, 0, n)
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: value %d is %v", ErrInvalid, i, v)
		}
		if wi := w(i); !(wi >= 0) || math.IsInf(wi, 1) {
			return nil, fmt.Errorf("%w: weight %d is %v", ErrInvalid, i, wi)
		} else if wi > 0 {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, fmt.Errorf("%w: the weights sum to zero", ErrInvalid)
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case values[a] < values[b]:
			return -1
		case values[a] > values[b]:
			return 1
		}
		return 0
	})
	// Distinct values u with merged weights uw.
	var u, uw []float64
	for _, i := range idx {
		if len(u) > 0 && u[len(u)-1] == values[i] {
			uw[len(uw)-1] += w(i)
			continue
		}
		u = append(u, values[i])
		uw = append(uw, w(i))
	}
	m := len(u)
	k = min(k, m)

	// Prefix sums of w, w·x and w·x² with x shifted by the weighted mean (less
	// cancellation in s2 − s1²/s0).
	var tw, twx float64
	for i := range u {
		tw += uw[i]
		twx += uw[i] * u[i]
	}
	mean := twx / tw
	p0, p1, p2 := make([]float64, m+1), make([]float64, m+1), make([]float64, m+1)
	for i := range u {
		x := u[i] - mean
		p0[i+1] = p0[i] + uw[i]
		p1[i+1] = p1[i] + uw[i]*x
		p2[i+1] = p2[i] + uw[i]*x*x
	}
	cost := func(i, j int) float64 { // cluster of u[i..j]
		s0, s1, s2 := p0[j+1]-p0[i], p1[j+1]-p1[i], p2[j+1]-p2[i]
		return max(0, s2-s1*s1/s0)
	}

	// d[j] = best cost of u[0..j] in c+1 clusters; split[c][j] = first index of the
	// last cluster.
	prev, cur := make([]float64, m), make([]float64, m)
	split := make([][]int32, k)
	for j := range m {
		prev[j] = cost(0, j)
	}
	split[0] = make([]int32, m)
	var solve func(c, jlo, jhi, olo, ohi int)
	solve = func(c, jlo, jhi, olo, ohi int) {
		if jlo > jhi {
			return
		}
		j := (jlo + jhi) / 2
		best, bi := math.Inf(1), -1
		for i := max(olo, c); i <= min(ohi, j); i++ {
			if v := prev[i-1] + cost(i, j); v < best {
				best, bi = v, i
			}
		}
		cur[j], split[c][j] = best, int32(bi)
		solve(c, jlo, j-1, olo, bi)
		solve(c, j+1, jhi, bi, ohi)
	}
	for c := 1; c < k; c++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		split[c] = make([]int32, m)
		for j := range c {
			cur[j] = math.Inf(1)
		}
		solve(c, c, m-1, c, m-1)
		prev, cur = cur, prev
	}
	res.Cost = prev[m-1]

	res.Centers = make([]float64, k)
	j := m - 1
	for c := k - 1; c >= 0; c-- {
		i := int(split[c][j])
		res.Centers[c] = mean + (p1[j+1]-p1[i])/(p0[j+1]-p0[i])
		j = i - 1
	}
	for i, v := range values {
		// l: the first centre at or above v; the nearest is l or l−1.
		l, _ := slices.BinarySearch(res.Centers, v)
		if l == k || (l > 0 && v-res.Centers[l-1] <= res.Centers[l]-v) {
			l--
		}
		res.Labels[i] = int32(l)
	}
	return res, nil
}
