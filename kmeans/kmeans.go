package kmeans

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"squeeze/runtime/kernels"
)

// ErrInvalid reports input that cannot be clustered: NaN or infinite values, negative
// weights, mismatched lengths or a non-positive k or dimension.
var ErrInvalid = errors.New("kmeans: invalid input")

// Defaults used for zero Options fields.
const (
	DefaultMaxIter   = 100
	DefaultTol       = 1e-4
	DefaultBlockSize = 4096
)

// Options tunes Spherical. The zero value is usable: seed 0, DefaultMaxIter iterations,
// tolerance DefaultTol, blocks of DefaultBlockSize vectors, GOMAXPROCS goroutines, unit
// weights.
type Options struct {
	// Seed seeds the k-means++ draws; every value, zero included, is a valid seed.
	Seed uint64
	// MaxIter caps the Lloyd iterations (assignment passes) per block; 0 means
	// DefaultMaxIter.
	MaxIter int
	// Tol stops a block when its objective Σ w·(1 − cos) improves by less than Tol
	// relative to the previous iteration; 0 means DefaultTol, a negative value stops only
	// when no assignment changes (or at MaxIter).
	Tol float64
	// BlockSize is the most consecutive vectors clustered together; the input is cut
	// into ⌈n/BlockSize⌉ blocks of equal size (± 1), so blocks hold more than
	// BlockSize/2 and at most BlockSize vectors, and with k ∝ n the cost per vector
	// never exceeds that of one full block. 0 means DefaultBlockSize; a negative value
	// clusters everything as one block (cost quadratic in n when k ∝ n).
	BlockSize int
	// Threads is the number of goroutines; 0 or less means runtime.GOMAXPROCS(0). The
	// result does not depend on it.
	Threads int
	// Weights, if not nil, holds one non-negative weight per vector: k-means++ draws,
	// the objective and the centroids are weighted by it. Nil means every weight is 1.
	Weights []float32
}

// Result is a clustering of n vectors into K clusters.
type Result struct {
	// K is the number of clusters: min(k, n).
	K int
	// Centroids holds K rows of dim values, row j the weighted mean of the raw
	// (unnormalised) vectors of cluster j (the plain mean if their weights sum to 0).
	Centroids []float32
	// Labels[i] is the cluster of vector i, in [0, K).
	Labels []int32
	// Counts[j] is the number of vectors in cluster j; every count is at least 1.
	Counts []int32
	// Iterations is the largest number of Lloyd iterations any block ran.
	Iterations int
	// Blocks is the number of blocks the input was cut into. Block b's clusters are a
	// contiguous range of labels, in block order, and hold only vectors of block b.
	Blocks int
}

// Spherical clusters the n = len(data)/dim vectors of data (row-major, n × dim) into k
// clusters by cosine similarity; see the package documentation. k larger than n is
// clamped to n (every vector its own cluster); n = 0 gives an empty Result. Every cluster
// of the result is non-empty. data is not modified and not retained.
//
// It returns an error wrapping ErrInvalid for bad arguments or non-finite data, and
// ctx.Err() if ctx is cancelled before it finishes.
func Spherical(ctx context.Context, data []float32, dim, k int, opt Options) (*Result, error) {
	if dim <= 0 || len(data)%dim != 0 {
		return nil, fmt.Errorf("%w: %d values do not form rows of dimension %d", ErrInvalid, len(data), dim)
	}
	n := len(data) / dim
	if k <= 0 {
		return nil, fmt.Errorf("%w: k = %d", ErrInvalid, k)
	}
	if opt.Weights != nil && len(opt.Weights) != n {
		return nil, fmt.Errorf("%w: %d weights for %d vectors", ErrInvalid, len(opt.Weights), n)
	}
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: vector %d has non-finite value %v", ErrInvalid, i/dim, v)
		}
	}
	for i, w := range opt.Weights {
		if !(w >= 0) || math.IsInf(float64(w), 1) {
			return nil, fmt.Errorf("%w: weight %d is %v", ErrInvalid, i, w)
		}
	}
	if opt.MaxIter <= 0 {
		opt.MaxIter = DefaultMaxIter
	}
	if opt.Tol == 0 {
		opt.Tol = DefaultTol
	}
	if opt.BlockSize == 0 {
		opt.BlockSize = DefaultBlockSize
	}
	if opt.Threads <= 0 {
		opt.Threads = runtime.GOMAXPROCS(0)
	}
	k = min(k, n)
	res := &Result{K: k, Labels: make([]int32, n), Counts: make([]int32, k), Centroids: make([]float32, k*dim)}
	if n == 0 {
		return res, nil
	}

	nb := 1
	if opt.BlockSize > 0 {
		nb = (n + opt.BlockSize - 1) / opt.BlockSize
	}
	nb = min(nb, k) // every block gets at least one cluster
	res.Blocks = nb
	unit := normalized(data, dim)

	blocks := make([]block, nb)
	for b := range blocks {
		blocks[b] = block{
			lo: b * n / nb, hi: (b + 1) * n / nb,
			klo: b * k / nb, khi: (b + 1) * k / nb,
		}
	}
	workers := min(opt.Threads, nb)
	inner := max(1, opt.Threads/workers)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = make([]error, nb)
		next int
	)
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				b := next
				next++
				mu.Unlock()
				if b >= nb {
					return
				}
				bl := &blocks[b]
				c := &cluster{
					dim:     dim,
					k:       bl.khi - bl.klo,
					x:       unit[bl.lo*dim : bl.hi*dim],
					rng:     rand.New(rand.NewPCG(opt.Seed, uint64(b))),
					threads: inner,
					opt:     &opt,
				}
				if opt.Weights != nil {
					c.w = opt.Weights[bl.lo:bl.hi]
				}
				labels := res.Labels[bl.lo:bl.hi]
				iters, err := c.run(ctx, labels)
				if err != nil {
					errs[b] = err
					continue
				}
				bl.iters = iters
				for i := range labels {
					labels[i] += int32(bl.klo)
				}
				rawMeans(res.Centroids[bl.klo*dim:bl.khi*dim], res.Counts[bl.klo:bl.khi], data[bl.lo*dim:bl.hi*dim], c.w, labels, bl.klo, dim)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, bl := range blocks {
		res.Iterations = max(res.Iterations, bl.iters)
	}
	return res, nil
}

// block is a range [lo, hi) of vectors clustered into clusters [klo, khi).
type block struct {
	lo, hi, klo, khi int
	iters            int
}

// normalized returns a copy of data with every row scaled to unit L2 norm (zero rows stay
// zero).
func normalized(data []float32, dim int) []float32 {
	out := make([]float32, len(data))
	for i := 0; i < len(data); i += dim {
		row := data[i : i+dim]
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		if s == 0 {
			continue
		}
		inv := 1 / math.Sqrt(s)
		for j, v := range row {
			out[i+j] = float32(float64(v) * inv)
		}
	}
	return out
}

// rawMeans writes the weighted mean of the raw vectors of each cluster (labels offset by
// base) into cent and the cluster sizes into counts. Sums run in vector order.
func rawMeans(cent []float32, counts []int32, data []float32, w []float32, labels []int32, base, dim int) {
	k := len(counts)
	sum := make([]float64, k*dim)
	plain := make([]float64, k*dim)
	wsum := make([]float64, k)
	for i, l := range labels {
		j := int(l) - base
		counts[j]++
		wi := 1.0
		if w != nil {
			wi = float64(w[i])
		}
		wsum[j] += wi
		row := data[i*dim : (i+1)*dim]
		s := sum[j*dim : (j+1)*dim]
		p := plain[j*dim : (j+1)*dim]
		for t, v := range row {
			s[t] += wi * float64(v)
			p[t] += float64(v)
		}
	}
	for j := range k {
		src, div := sum[j*dim:(j+1)*dim], wsum[j]
		if div == 0 {
			src, div = plain[j*dim:(j+1)*dim], float64(counts[j])
		}
		for t, v := range src {
			cent[j*dim+t] = float32(v / div)
		}
	}
}

// cluster is the state of spherical k-means over one block of unit vectors.
type cluster struct {
	dim, k  int
	x       []float32 // m unit (or zero) rows
	w       []float32 // weights or nil
	rng     *rand.Rand
	threads int
	opt     *Options

	c      []float32 // k unit centroids
	sim    []float32 // per vector: cosine to its centroid (or nearest seed)
	counts []int32

	// Transposed copies, so that one vector's cosines to all centroids (or one
	// candidate's to all vectors) are dim vectorised AXPYs instead of many short dot
	// products.
	xT []float32 // dim × m
	cT []float32 // dim × kp, kp = k rounded up to a multiple of 16, zero padded
	kp int
}

// transposeCentroids refreshes cT from c.
func (c *cluster) transposeCentroids() {
	for j := range c.k {
		for t, v := range c.c[j*c.dim : (j+1)*c.dim] {
			c.cT[t*c.kp+j] = v
		}
	}
}

func (c *cluster) weight(i int) float64 {
	if c.w == nil {
		return 1
	}
	return float64(c.w[i])
}

// parallel runs fn over [0, m) in at most c.threads contiguous chunks; part (< c.threads)
// numbers the chunk. Chunk bounds are multiples of 64 (but the last), so that vectorised
// kernels split every chunk the same way whatever the number of chunks: results do not
// depend on c.threads.
func (c *cluster) parallel(m int, fn func(part, lo, hi int)) {
	parts := min(c.threads, max(1, m/256))
	if parts <= 1 {
		fn(0, 0, m)
		return
	}
	bound := func(p int) int { return min(m, (p*m/parts)&^63) }
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := bound(p), bound(p+1)
		if p == parts-1 {
			hi = m
		}
		wg.Go(func() { fn(p, lo, hi) })
	}
	wg.Wait()
}

// run clusters the block, writing block-local labels; it returns the number of Lloyd
// iterations.
func (c *cluster) run(ctx context.Context, labels []int32) (int, error) {
	m := len(labels)
	c.c = make([]float32, c.k*c.dim)
	c.sim = make([]float32, m)
	c.counts = make([]int32, c.k)
	c.kp = (c.k + 15) &^ 15
	c.cT = make([]float32, c.dim*c.kp)
	c.xT = make([]float32, c.dim*m)
	for i := range m {
		for t, v := range c.x[i*c.dim : (i+1)*c.dim] {
			c.xT[t*m+i] = v
		}
	}
	if err := c.seed(ctx); err != nil {
		return 0, err
	}
	for i := range labels {
		labels[i] = -1
	}
	prevObj := math.Inf(1)
	iters := 0
	for iters < c.opt.MaxIter {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		iters++
		changed := c.assign(labels)
		obj := 0.0
		for i, s := range c.sim {
			obj += c.weight(i) * (1 - float64(s))
		}
		if changed == 0 {
			break
		}
		if c.opt.Tol > 0 && !math.IsInf(prevObj, 1) && prevObj-obj <= c.opt.Tol*math.Abs(prevObj) {
			break
		}
		prevObj = obj
		if iters == c.opt.MaxIter {
			break
		}
		c.update(labels)
		c.fixEmpty(labels)
	}
	c.fixEmpty(labels)
	return iters, nil
}

// seed picks k initial centroids by greedy k-means++ on the distance 1 − cos (half the
// squared Euclidean distance between unit vectors), weighted by the vector weights: each
// step draws 2 + ⌊ln k⌋ candidates with probability ∝ weight·distance and keeps the one
// that lowers the total distance most (as scikit-learn does).
func (c *cluster) seed(ctx context.Context) error {
	m, dim := len(c.sim), c.dim
	trials := 2 + int(math.Log(float64(c.k)))
	chosen := make([]bool, m)
	d := make([]float64, m)
	cand := make([]int, trials)
	cost := make([]float64, trials)
	next := make([][]float32, trials) // candidate t's sim to the nearest centre
	for t := range next {
		next[t] = make([]float32, m)
	}
	for i := range c.sim {
		c.sim[i] = float32(math.Inf(-1))
	}
	for j := range c.k {
		if j%16 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var total float64
		for i := range d {
			if j == 0 {
				d[i] = c.weight(i)
			} else {
				d[i] = c.weight(i) * max(0, 1-float64(c.sim[i]))
			}
			if chosen[i] {
				d[i] = 0
			}
			total += d[i]
		}
		nt := trials
		if j == 0 || total == 0 {
			nt = 1
		}
		for t := range nt {
			cand[t] = c.draw(d, total, chosen)
		}
		c.parallel(m, func(_, lo, hi int) {
			for t := range nt {
				ct := c.x[cand[t]*dim : (cand[t]+1)*dim]
				nx := next[t][lo:hi]
				clear(nx)
				for d, v := range ct {
					kernels.Axpy(v, c.xT[d*m+lo:d*m+hi], nx)
				}
				for i, s := range c.sim[lo:hi] {
					nx[i] = max(nx[i], s)
				}
			}
		})
		best := 0
		if nt > 1 {
			for t := range nt {
				cost[t] = 0
				for i, s := range next[t] {
					cost[t] += c.weight(i) * max(0, 1-float64(s))
				}
				if cost[t] < cost[best] {
					best = t
				}
			}
		}
		pick := cand[best]
		chosen[pick] = true
		copy(c.c[j*dim:(j+1)*dim], c.x[pick*dim:(pick+1)*dim])
		copy(c.sim, next[best])
	}
	return nil
}

// draw picks index i with probability d[i]/total, or the first vector not yet chosen when
// total is 0.
func (c *cluster) draw(d []float64, total float64, chosen []bool) int {
	pick := -1
	if total > 0 {
		r := c.rng.Float64() * total
		for i, v := range d {
			if v > 0 {
				pick = i
				if r < v {
					break
				}
				r -= v
			}
		}
		return pick
	}
	for i, ch := range chosen {
		if !ch {
			return i
		}
	}
	return 0
}

// assign moves every vector to its most similar centroid (the lowest index on ties),
// records the similarity and the counts, and returns how many labels changed.
func (c *cluster) assign(labels []int32) int {
	dim, k, kp := c.dim, c.k, c.kp
	changed := make([]int, c.threads)
	c.transposeCentroids()
	c.parallel(len(labels), func(part, lo, hi int) {
		n := 0
		sims := make([]float32, kp)
		for i := lo; i < hi; i++ {
			clear(sims)
			for d, v := range c.x[i*dim : (i+1)*dim] {
				kernels.Axpy(v, c.cT[d*kp:(d+1)*kp], sims)
			}
			best, bj := float32(math.Inf(-1)), 0
			for j, s := range sims[:k] {
				if s > best {
					best, bj = s, j
				}
			}
			if labels[i] != int32(bj) {
				labels[i] = int32(bj)
				n++
			}
			c.sim[i] = best
		}
		changed[part] = n
	})
	for j := range c.counts {
		c.counts[j] = 0
	}
	total := 0
	for _, n := range changed {
		total += n
	}
	for _, l := range labels {
		c.counts[l]++
	}
	return total
}

// update sets every non-empty centroid to the normalised weighted mean of its unit vectors
// (a zero mean keeps the previous centroid).
func (c *cluster) update(labels []int32) {
	dim := c.dim
	sum := make([]float64, c.k*dim)
	for i, l := range labels {
		wi := c.weight(i)
		s := sum[int(l)*dim : (int(l)+1)*dim]
		for t, v := range c.x[i*dim : (i+1)*dim] {
			s[t] += wi * float64(v)
		}
	}
	for j := range c.k {
		s := sum[j*dim : (j+1)*dim]
		var nn float64
		for _, v := range s {
			nn += v * v
		}
		if nn == 0 {
			continue
		}
		inv := 1 / math.Sqrt(nn)
		for t, v := range s {
			c.c[j*dim+t] = float32(v * inv)
		}
	}
}

// fixEmpty gives every empty cluster the vector least similar to its own centroid among
// clusters holding more than one vector (ties: the lowest index), and makes it that
// cluster's centroid. Since k ≤ m, afterwards no cluster is empty.
func (c *cluster) fixEmpty(labels []int32) {
	dim := c.dim
	for j := range c.k {
		if c.counts[j] > 0 {
			continue
		}
		pick := -1
		for i, l := range labels {
			if c.counts[l] > 1 && (pick < 0 || c.sim[i] < c.sim[pick]) {
				pick = i
			}
		}
		c.counts[labels[pick]]--
		labels[pick] = int32(j)
		c.counts[j] = 1
		c.sim[pick] = float32(math.Inf(1)) // never moved again
		copy(c.c[j*dim:(j+1)*dim], c.x[pick*dim:(pick+1)*dim])
	}
}
