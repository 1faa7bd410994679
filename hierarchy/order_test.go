package hierarchy

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// arc returns n unit directions at angles 0, step, 2·step, ... in the plane of the first
// two of dim coordinates, in a shuffled order: rows of cent, and each row's angle.
func arc(n, dim int, step float64, seed uint64) (cent []float32, angle []float64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	perm := rng.Perm(n)
	cent = make([]float32, n*dim)
	angle = make([]float64, n)
	for i, k := range perm {
		a := float64(k) * step
		angle[i] = a
		cent[i*dim] = float32(math.Cos(a))
		cent[i*dim+1] = float32(math.Sin(a))
	}
	return cent, angle
}

// monotone reports whether the angles of order run up or down without a turn.
func monotone(order []int32, angle []float64) bool {
	up, down := true, true
	for k := 1; k < len(order); k++ {
		d := angle[order[k]] - angle[order[k-1]]
		up, down = up && d > 0, down && d < 0
	}
	return up || down
}

func TestChainOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		step float64
	}{
		{"two", 2, 0.3},
		{"a short arc", 9, 0.2},
		{"a long arc", 200, math.Pi / 200},
		{"past maxChain: sorted by projection", maxChain + 500, math.Pi / (maxChain + 500)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const dim = 8
			cent, angle := arc(tc.n, dim, tc.step, 3)
			items := make([]int32, tc.n)
			for i := range items {
				items[i] = int32(i)
			}
			got := chainOrder(append([]int32(nil), items...), cent, dim, nil)
			seen := make([]bool, tc.n)
			for _, it := range got {
				if seen[it] {
					t.Fatalf("item %d twice", it)
				}
				seen[it] = true
			}
			if len(got) != tc.n {
				t.Fatalf("%d items, want %d", len(got), tc.n)
			}
			if !monotone(got, angle) {
				t.Fatalf("the chain turns back along the arc: angles %v", angleOf(got[:min(12, len(got))], angle))
			}
		})
	}
}

func angleOf(order []int32, angle []float64) []float64 {
	a := make([]float64, len(order))
	for k, it := range order {
		a[k] = angle[it]
	}
	return a
}

// TestChainOrderAfter checks that a chain starts at the item nearest the given
// direction, and that a zero row (a cluster without direction) still gets a place.
func TestChainOrderAfter(t *testing.T) {
	const dim, n = 4, 7
	cent, angle := arc(n, dim, 0.25, 9)
	items := []int32{0, 1, 2, 3, 4, 5, 6}
	for target := range n {
		after := []float64{math.Cos(angle[target]), math.Sin(angle[target]), 0, 0}
		got := chainOrder(append([]int32(nil), items...), cent, dim, after)
		if got[0] != int32(target) {
			t.Fatalf("after the direction of item %d (angle %.2f) the chain starts at item %d (angle %.2f)",
				target, angle[target], got[0], angle[got[0]])
		}
	}
	clear(cent[2*dim : 3*dim])
	got := chainOrder(append([]int32(nil), items...), cent, dim, nil)
	if len(got) != n {
		t.Fatalf("%d items with a zero row, want %d", len(got), n)
	}
}

// TestBuildOrdersSiblings builds a tree over keys around directions spread along an arc
// and checks that its leaves, in storage order, walk the arc instead of jumping across
// it: consecutive leaves are similar, so a query's selected leaves make few spans.
func TestBuildOrdersSiblings(t *testing.T) {
	const dim, centers, per = 16, 40, 50
	rng := rand.New(rand.NewPCG(4, 4))
	order := rng.Perm(centers)
	keys := make([]float32, 0, centers*per*dim)
	for _, c := range order {
		a := float64(c) * math.Pi / centers
		for range per {
			for d := range dim {
				v := 0.05 * rng.NormFloat64()
				switch d {
				case 0:
					v += 3 * math.Cos(a)
				case 1:
					v += 3 * math.Sin(a)
				}
				keys = append(keys, float32(v))
			}
		}
	}
	tr, err := Build(context.Background(), keys, dim, nil, Config{Fractions: []float64{0.005, 0.02}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	last := tr.Levels() - 1
	cent, counts := tr.Centroids(last), tr.Counts(last)
	var path, prev float64
	first := true
	for j := range tr.Clusters(last) {
		if counts[j] == 0 {
			continue
		}
		a := math.Atan2(float64(cent[j*dim+1]), float64(cent[j*dim]))
		if !first {
			path += math.Abs(a - prev)
		}
		prev, first = a, false
	}
	// Walking the arc once is π; leaves in an arbitrary order jump about a third of it
	// at each of their 40 steps.
	if path > 2*math.Pi {
		t.Fatalf("the leaves' angles change by %.1f rad in all along storage order, want under 2π", path)
	}
}
