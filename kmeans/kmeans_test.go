package kmeans

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// blobs returns c clusters of m vectors each around random directions in dim dimensions
// (raw vectors with norms between 0.5 and 4), shuffled, and the true cluster of each.
func blobs(seed uint64, c, m, dim int, noise float64) ([]float32, []int) {
	r := rand.New(rand.NewPCG(seed, 1))
	dirs := make([][]float64, c)
	for j := range dirs {
		dirs[j] = make([]float64, dim)
		var s float64
		for t := range dirs[j] {
			dirs[j][t] = r.NormFloat64()
			s += dirs[j][t] * dirs[j][t]
		}
		for t := range dirs[j] {
			dirs[j][t] /= math.Sqrt(s)
		}
	}
	n := c * m
	perm := r.Perm(n)
	data := make([]float32, n*dim)
	truth := make([]int, n)
	for i := range n {
		j := perm[i] % c
		truth[i] = j
		scale := 0.5 + 3.5*r.Float64()
		for t := range dim {
			data[i*dim+t] = float32(scale * (dirs[j][t] + noise*r.NormFloat64()))
		}
	}
	return data, truth
}

func TestSphericalRecoversClusters(t *testing.T) {
	tests := []struct {
		name      string
		c, m, dim int
		blockSize int
	}{
		{"one block", 8, 60, 16, -1},
		{"default blocks", 12, 40, 32, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, truth := blobs(7, tc.c, tc.m, tc.dim, 0.05)
			res, err := Spherical(context.Background(), data, tc.dim, tc.c, Options{Seed: 1, BlockSize: tc.blockSize})
			if err != nil {
				t.Fatal(err)
			}
			if res.K != tc.c || len(res.Labels) != len(truth) {
				t.Fatalf("K = %d, %d labels", res.K, len(res.Labels))
			}
			// Every true cluster maps to exactly one label and vice versa.
			toLabel := map[int]int32{}
			toTrue := map[int32]int{}
			for i, l := range res.Labels {
				if got, ok := toLabel[truth[i]]; ok && got != l {
					t.Fatalf("true cluster %d split over labels %d and %d", truth[i], got, l)
				}
				if got, ok := toTrue[l]; ok && got != truth[i] {
					t.Fatalf("label %d merges true clusters %d and %d", l, got, truth[i])
				}
				toLabel[truth[i]], toTrue[l] = l, truth[i]
			}
			checkRawMeans(t, data, nil, tc.dim, res)
		})
	}
}

// checkRawMeans checks counts and that every centroid is the (weighted) mean of the raw
// vectors of its cluster.
func checkRawMeans(t *testing.T, data, w []float32, dim int, res *Result) {
	t.Helper()
	sum := make([]float64, res.K*dim)
	ws := make([]float64, res.K)
	counts := make([]int32, res.K)
	for i, l := range res.Labels {
		wi := 1.0
		if w != nil {
			wi = float64(w[i])
		}
		counts[l]++
		ws[l] += wi
		for d := range dim {
			sum[int(l)*dim+d] += wi * float64(data[i*dim+d])
		}
	}
	if !slices.Equal(counts, res.Counts) {
		t.Fatalf("counts %v, labels give %v", res.Counts, counts)
	}
	for j := range res.K {
		if counts[j] == 0 {
			t.Fatalf("cluster %d is empty", j)
		}
		for d := range dim {
			want := sum[j*dim+d] / ws[j]
			if got := float64(res.Centroids[j*dim+d]); math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("centroid %d[%d] = %v, mean of raw vectors %v", j, d, got, want)
			}
		}
	}
}

func TestSphericalDeterministicAcrossThreads(t *testing.T) {
	const dim = 32
	data, _ := blobs(11, 40, 150, dim, 0.5) // 6000 vectors, heavily overlapping
	var ref *Result
	for _, threads := range []int{1, 2, 3, 8} {
		res, err := Spherical(context.Background(), data, dim, 300, Options{Seed: 42, BlockSize: 2048, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		if res.Blocks != 3 { // ⌈6000/2048⌉
			t.Fatalf("%d blocks, want 3", res.Blocks)
		}
		if ref == nil {
			ref = res
			checkRawMeans(t, data, nil, dim, res)
			continue
		}
		if !slices.Equal(res.Labels, ref.Labels) || !slices.Equal(res.Centroids, ref.Centroids) || res.Iterations != ref.Iterations {
			t.Fatalf("threads %d: result differs from threads 1", threads)
		}
	}
	other, err := Spherical(context.Background(), data, dim, 300, Options{Seed: 43, BlockSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(other.Labels, ref.Labels) {
		t.Fatal("seeds 42 and 43 give the same labels")
	}
}

func TestSphericalBlocks(t *testing.T) {
	const dim = 8
	data, _ := blobs(5, 10, 1000, dim, 0.3)
	res, err := Spherical(context.Background(), data, dim, 500, Options{BlockSize: 3000})
	if err != nil {
		t.Fatal(err)
	}
	const nb = 4 // ⌈10000/3000⌉ blocks of 2500
	if res.Blocks != nb {
		t.Fatalf("%d blocks, want %d", res.Blocks, nb)
	}
	// Block b holds vectors [b·n/nb, (b+1)·n/nb) and clusters [b·k/nb, (b+1)·k/nb).
	n := len(res.Labels)
	for i, l := range res.Labels {
		b := 0
		for b < nb-1 && i >= (b+1)*n/nb {
			b++
		}
		if int(l) < b*500/nb || int(l) >= (b+1)*500/nb {
			t.Fatalf("vector %d of block %d has label %d", i, b, l)
		}
	}
	checkRawMeans(t, data, nil, dim, res)
}

func TestSphericalEdgeCases(t *testing.T) {
	dup := make([]float32, 0, 3*20*2)
	for i := range 20 {
		dup = append(dup, []float32{1, 0, 0, 1, -1, 0}[2*(i%3):2*(i%3)+2]...)
	}
	tests := []struct {
		name  string
		data  []float32
		dim   int
		k     int
		wantK int
	}{
		{"n = 0", nil, 4, 3, 0},
		{"k > n", []float32{1, 2, 3, 4, 5, 6}, 2, 10, 3},
		{"k = n", []float32{1, 2, 3, 4, 5, 6}, 2, 3, 3},
		{"duplicates force empty clusters", dup, 2, 5, 5},
		{"zero vectors", make([]float32, 40), 4, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Spherical(context.Background(), tc.data, tc.dim, tc.k, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.K != tc.wantK || len(res.Counts) != tc.wantK || len(res.Centroids) != tc.wantK*tc.dim {
				t.Fatalf("K = %d (%d counts, %d centroid values), want %d", res.K, len(res.Counts), len(res.Centroids), tc.wantK)
			}
			if len(tc.data) > 0 {
				checkRawMeans(t, tc.data, nil, tc.dim, res)
			}
		})
	}
}

func TestSphericalInvalid(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	tests := []struct {
		name string
		data []float32
		dim  int
		k    int
		opt  Options
	}{
		{"NaN", []float32{1, 2, nan, 4}, 2, 1, Options{}},
		{"Inf", []float32{1, 2, 3, inf}, 2, 1, Options{}},
		{"ragged", []float32{1, 2, 3}, 2, 1, Options{}},
		{"dim 0", []float32{1, 2}, 0, 1, Options{}},
		{"k 0", []float32{1, 2}, 2, 0, Options{}},
		{"weights length", []float32{1, 2}, 2, 1, Options{Weights: []float32{1, 1}}},
		{"negative weight", []float32{1, 2}, 2, 1, Options{Weights: []float32{-1}}},
		{"NaN weight", []float32{1, 2}, 2, 1, Options{Weights: []float32{nan}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Spherical(context.Background(), tc.data, tc.dim, tc.k, tc.opt)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSphericalCancel(t *testing.T) {
	data, _ := blobs(1, 10, 100, 8, 0.5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Spherical(ctx, data, 8, 50, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestSphericalWeights(t *testing.T) {
	const dim = 6
	data, _ := blobs(9, 5, 80, dim, 0.1)
	r := rand.New(rand.NewPCG(2, 2))
	w := make([]float32, len(data)/dim)
	for i := range w {
		w[i] = float32(r.IntN(4)) // zeros included
	}
	res, err := Spherical(context.Background(), data, dim, 5, Options{Weights: w})
	if err != nil {
		t.Fatal(err)
	}
	// Weighted means; a cluster whose weights all vanish falls back to the plain mean,
	// which this data (80 vectors a cluster) makes vanishingly unlikely.
	checkRawMeans(t, data, w, dim, res)
}

func TestWeighted1DBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for trial := range 300 {
		n := 1 + r.IntN(7)
		k := 1 + r.IntN(4)
		values := make([]float64, n)
		weights := make([]float64, n)
		for i := range values {
			values[i] = float64(r.IntN(6)) - 2.5 + 0.01*r.Float64()*float64(trial%2) // ties on even trials
			weights[i] = float64(r.IntN(3)) + 0.5*float64(trial%3)
		}
		if trial%3 == 0 {
			weights[0] = 1 // keep the total positive
		}
		res, err := Weighted1D(context.Background(), values, weights, k)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteForce1D(values, weights, k)
		if math.Abs(res.Cost-want) > 1e-9*(1+want) {
			t.Fatalf("trial %d: values %v weights %v k %d: cost %v, brute force %v", trial, values, weights, k, res.Cost, want)
		}
		// The labels realise the reported cost, and the centres ascend.
		var got float64
		for i, v := range values {
			d := v - res.Centers[res.Labels[i]]
			got += weights[i] * d * d
			for _, c := range res.Centers {
				if math.Abs(v-c) < math.Abs(d)-1e-12 {
					t.Fatalf("trial %d: value %v labelled %v, %v is nearer", trial, v, res.Centers[res.Labels[i]], c)
				}
			}
		}
		if math.Abs(got-res.Cost) > 1e-9*(1+want) {
			t.Fatalf("trial %d: labels cost %v, reported %v", trial, got, res.Cost)
		}
		if !slices.IsSorted(res.Centers) {
			t.Fatalf("trial %d: centres %v not ascending", trial, res.Centers)
		}
	}
}

// bruteForce1D tries every assignment of n values to k labels.
func bruteForce1D(values, weights []float64, k int) float64 {
	n := len(values)
	labels := make([]int, n)
	best := math.Inf(1)
	for {
		s0, s1, s2 := make([]float64, k), make([]float64, k), make([]float64, k)
		for i, l := range labels {
			s0[l] += weights[i]
			s1[l] += weights[i] * values[i]
			s2[l] += weights[i] * values[i] * values[i]
		}
		var c float64
		for l := range k {
			if s0[l] > 0 {
				c += s2[l] - s1[l]*s1[l]/s0[l]
			}
		}
		best = min(best, c)
		i := 0
		for i < n && labels[i] == k-1 {
			labels[i] = 0
			i++
		}
		if i == n {
			return max(0, best)
		}
		labels[i]++
	}
}

func TestWeighted1DLarge(t *testing.T) {
	// Two levels of a mixture: the optimum with k = 2 puts one centre on each mode.
	r := rand.New(rand.NewPCG(8, 8))
	values := make([]float64, 20000)
	for i := range values {
		values[i] = 0.01 * r.NormFloat64()
		if i%2 == 1 {
			values[i] += 5
		}
	}
	res, err := Weighted1D(context.Background(), values, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.Centers[0]) > 0.01 || math.Abs(res.Centers[1]-5) > 0.01 {
		t.Fatalf("centres %v, want about 0 and 5", res.Centers)
	}
}

func TestWeighted1DEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		values  []float64
		weights []float64
		k       int
		centers []float64
		labels  []int32
		err     error
	}{
		{"empty", nil, nil, 3, nil, []int32{}, nil},
		{"k above distinct", []float64{3, 1, 3, 2}, nil, 5, []float64{1, 2, 3}, []int32{2, 0, 2, 1}, nil},
		{"zero weight labelled", []float64{0, 10, 4}, []float64{1, 1, 0}, 2, []float64{0, 10}, []int32{0, 1, 0}, nil},
		{"k 0", []float64{1}, nil, 0, nil, nil, ErrInvalid},
		{"NaN value", []float64{math.NaN()}, nil, 1, nil, nil, ErrInvalid},
		{"negative weight", []float64{1, 2}, []float64{1, -1}, 1, nil, nil, ErrInvalid},
		{"zero total", []float64{1, 2}, []float64{0, 0}, 1, nil, nil, ErrInvalid},
		{"weights length", []float64{1, 2}, []float64{1}, 1, nil, nil, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Weighted1D(context.Background(), tc.values, tc.weights, tc.k)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Centers, tc.centers) || !slices.Equal(res.Labels, tc.labels) {
				t.Fatalf("centres %v labels %v, want %v %v", res.Centers, res.Labels, tc.centers, tc.labels)
			}
		})
	}
}

// BenchmarkSphericalScaling clusters n structured 64-dimensional vectors (n/64
// directions, noise 0.2 per coordinate) into 5% as many clusters. With blocks of
// DefaultBlockSize the time per vector stays at or below that of one full block as n
// grows (sizes between whole blocks, such as 6000 and 8000, are cut into smaller
// blocks); as one block (the "whole" cases) it grows in proportion to n.
func BenchmarkSphericalScaling(b *testing.B) {
	for _, tc := range []struct {
		n, blockSize int
	}{{4096, 0}, {6000, 0}, {8000, 0}, {16384, 0}, {32768, 0}, {65536, 0}, {4096, -1}, {16384, -1}} {
		name := fmt.Sprintf("n=%d/blocks", tc.n)
		if tc.blockSize < 0 {
			name = fmt.Sprintf("n=%d/whole", tc.n)
		}
		b.Run(name, func(b *testing.B) {
			const dim = 64
			data, _ := blobs(3, tc.n/64, 64, dim, 0.2)
			k := tc.n / 20
			iters := 0
			for b.Loop() {
				res, err := Spherical(context.Background(), data, dim, k, Options{Seed: 1, BlockSize: tc.blockSize})
				if err != nil {
					b.Fatal(err)
				}
				iters = res.Iterations
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(tc.n), "ns/vector")
			b.ReportMetric(float64(iters), "iters")
		})
	}
}

// BenchmarkWeighted1D finds the optimal 16 levels for n normally distributed values
// (all distinct) with random weights.
func BenchmarkWeighted1D(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(5, 5))
			values, weights := make([]float64, n), make([]float64, n)
			for i := range values {
				values[i], weights[i] = r.NormFloat64(), r.Float64()
			}
			for b.Loop() {
				if _, err := Weighted1D(context.Background(), values, weights, 16); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
