package sparse

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"squeeze/runtime/gguf"
	"squeeze/runtime/index"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// Errors NewSession returns.
var (
	// ErrMismatch means the context's shape (layers, KV heads, head dimension, row
	// counts) does not fit the model or is inconsistent.
	ErrMismatch = errors.New("sparse: context does not match the model")
	// ErrBudget means no calibrated threshold meets the requested budget.
	ErrBudget = errors.New("sparse: no threshold for the budget")
)

// Threshold returns the calibrated setting a session with the given budget uses: the
// threshold calibrated for exactly that budget if there is one, otherwise the one with
// the largest budget not above it. dense reports that the budget is 1 or more, which
// reads every key without a lookup. It fails with ErrBudget if the budget is below every
// calibrated one.
func (c *Context) Threshold(budget float64) (t Threshold, dense bool, err error) {
	if budget >= 1 {
		return Threshold{Budget: 1, Fraction: 1}, true, nil
	}
	best := -1
	for i, th := range c.Thresholds {
		if th.Budget <= budget && (best < 0 || th.Budget > c.Thresholds[best].Budget) {
			best = i
		}
	}
	if best < 0 {
		have := make([]float64, len(c.Thresholds))
		for i, th := range c.Thresholds {
			have[i] = th.Budget
		}
		return Threshold{}, false, fmt.Errorf("%w: budget %g, calibrated budgets %v", ErrBudget, budget, have)
	}
	return c.Thresholds[best], false, nil
}

// Stats counts what a session's lookups read. A lookup is one (layer, KV head) of one
// Attend call.
type Stats struct {
	// Lookups is the number of (layer, KV head) selections made.
	Lookups int
	// KeysRead is the number of context keys attended (selected clusters' keys and the
	// Always rows); Centroids the number of centroids scored; Keys the number of
	// context keys those lookups could have read (all of them, each time).
	KeysRead, Centroids, Keys int64
}

// RealizedBudget is (keys read + centroids scored) / keys: the fraction of a dense
// pass's key reads that the lookups cost, averaged over lookups (every lookup of a
// context has the same number of keys). It is 0 before any lookup.
func (s Stats) RealizedBudget() float64 { return s.KeysFraction() + s.CentroidsFraction() }

// KeysFraction is the part of RealizedBudget spent on keys.
func (s Stats) KeysFraction() float64 {
	if s.Keys == 0 {
		return 0
	}
	return float64(s.KeysRead) / float64(s.Keys)
}

// CentroidsFraction is the part of RealizedBudget spent on centroids.
func (s Stats) CentroidsFraction() float64 {
	if s.Keys == 0 {
		return 0
	}
	return float64(s.Centroids) / float64(s.Keys)
}

// Prefetcher is Rows that can start loading what reading rows [lo, hi) reads first,
// for a reader that visits short runs of rows at scattered places, as a session does
// with its selected spans (the hardware prefetchers do not foresee the next span). It
// has no other effect; ranges outside the rows are ignored.
type Prefetcher interface {
	Prefetch(lo, hi int)
}

// GroupRows are Rows that serve several query vectors in one pass over their rows, as
// quantized rows do (each row decoded once for all of them). A session scores and adds
// such keys and values this way. For every vector, the results must be those of its own
// Dots and Accumulate calls up to float rounding, and must not depend on the other
// vectors of the call (so that AttendExact can pass a batch's vectors together).
type GroupRows interface {
	Rows
	// QueriesLen returns the length of the form of nq query vectors that PrepareQueries
	// writes for DotsN, or 0 if DotsN reads the vectors as they are.
	QueriesLen(nq int) int
	// PrepareQueries writes that form of the nq vectors q (nq·dim values) to dst.
	PrepareQueries(dst, q []float32, nq int)
	// DotsN sets dst[v*dstride+i] = q[v*dim:(v+1)*dim] · row(lo+i) for v < nq and
	// i < hi-lo, dim the rows' length; prep is PrepareQueries' form of q (nil if
	// QueriesLen(nq) is 0).
	DotsN(dst []float32, dstride int, q, prep []float32, nq, lo, hi int)
	// AccumulateN adds Σ_i w[v*wstride+i] · row(lo+i) to out[v*ostride:][:dim] for
	// v < nq, i < hi-lo.
	AccumulateN(out []float32, ostride int, w []float32, wstride, nq, lo, hi int)
}

// QueriesFormer is GroupRows that say which form PrepareQueries writes: rows whose
// QueriesForm values are equal and not nil write the same form of the same vectors, so
// that a session prepares the vectors once for both (a head's clustered keys and its
// always-attended ones, quantized alike).
type QueriesFormer interface {
	QueriesForm() any
}

// sameQueries reports whether a and b prepare query vectors alike (QueriesFormer).
func sameQueries(a, b Rows) bool {
	fa, ok := a.(QueriesFormer)
	if !ok {
		return false
	}
	fb, ok := b.(QueriesFormer)
	if !ok {
		return false
	}
	form := fa.QueriesForm()
	return form != nil && form == fb.QueriesForm()
}

// Decoder is Rows that write rows out as float32, keys rotated to their positions: what
// Dots and Accumulate read. A session decodes a chunk's rows once this way for a large
// batch of query vectors (a prefill) and multiplies them with all the vectors at once,
// instead of decoding each row once per few vectors (GroupRows); calls that must give
// each token's results as a one-token call does (AttendExact) do not.
type Decoder interface {
	Dequantize(dst []float32, lo, hi int)
}

// segment is a range [lo, hi) of one pair of key and value row stores.
type segment struct {
	k, v   Rows
	lo, hi int
	prep   []float32 // the queries prepared for k (GroupRows), or nil
	kinds  *rowKinds // k's and v's forms, kept in the head's state
}

// rowKinds is a segment's keys and values as the forms attendChunk reads them (each nil
// where the rows are not of that form), found once per lookup rather than per chunk.
type rowKinds struct {
	f16K, f16V *F16Rows
	groupK     GroupRows
	groupV     GroupRows
	decK, decV Decoder
	preK, preV Prefetcher
}

// kindsOf returns the forms of keys k and values v.
func kindsOf(k, v Rows) rowKinds {
	var r rowKinds
	r.f16K, _ = k.(*F16Rows)
	r.f16V, _ = v.(*F16Rows)
	r.groupK, _ = k.(GroupRows)
	r.groupV, _ = v.(GroupRows)
	r.decK, _ = k.(Decoder)
	r.decV, _ = v.(Decoder)
	r.preK, _ = k.(Prefetcher)
	r.preV, _ = v.(Prefetcher)
	return r
}

// unit is one share of an Attend call: the keys [lo, hi), in the order of their
// segments, of s.heads[head] (a KV head of a lookup group).
type unit struct {
	head, lo, hi int
}

// headState is one KV head's lookup scratch.
type headState struct {
	search index.Searcher
	sel    index.Selection
	qs     []float32 // the group's queries as Attend gets them (scaled), token-major
	q      []float32 // the same unscaled, for the lookup
	segs   []segment
	keys   int // keys in segs, the tail's included
	// The queries prepared for the keys, the always-attended keys and each block of the
	// tail's keys (GroupRows).
	prepK, prepA []float32
	prepT        [][]float32
	// The forms of the keys and values, of the always-attended rows and of each block
	// of the tail (the segments point at them).
	kinds, kindsA rowKinds
	kindsT        []rowKinds
}

// A chunk is the keys scored at once per query vector, gathered from consecutive spans,
// before the online softmax folds them in. It is computed once it holds Target keys and
// holds at most Max. A span that does not fit in what is left goes whole to the next
// chunk, unless this one holds fewer than Min keys or the span is longer than Max: each
// piece of a span pays a scattered start (for quantized rows, the place of their
// corrections and a partial block of rows), so a span kept whole costs less than the
// same keys in two pieces.
type chunking struct{ Target, Max, Min int }

// The chunkings of the kinds of call (chunkingOf). Decoding wants long chunks: every
// chunk restarts the streams of its keys and values and pays the softmax's
// bookkeeping, and a few query vectors keep little in cache. A squeezed session's
// chunks stay within the spans it prefetches ahead (prefetchLead); a dense session's
// rows are one stream each that the hardware prefetchers follow. Batches of many
// vectors (minBatchedVecs) multiply each chunk's keys and values with all of them:
// a dense batch keeps a chunk's keys, decoded to float32 when quantized, in the
// first-level cache while every vector reads them; a squeezed batch gathers a chunk from
// many spans and pays each chunk's products' setup, so it takes chunks as long as
// batchScores allows, up to batchSqueezed. Variables so that tests can make chunks
// short.
var (
	decodeSqueezed = chunking{Target: 512, Max: 768, Min: 128}
	decodeDense    = chunking{Target: 2048, Max: 2048, Min: 1024}
	batchDense     = chunking{Target: 128, Max: 128, Min: 64}
	batchSqueezed  = chunking{Target: 2048, Max: 2048, Min: 1024}
)

// batchScores bounds the scores of one unit's chunk in a squeezed batch, in values
// (2 MB): a chunk of a long prompt's many vectors is shorter.
const batchScores = 1 << 19

// chunkingOf returns the chunking of the current call: by the number of vectors whose
// count decides the batched products (batchedVecs, so that an exact call chunks as a
// one-token call does) and whether the session is dense.
func (s *Session) chunkingOf() chunking {
	vecs := s.batchedVecs()
	switch {
	case vecs >= minBatchedVecs && s.dense:
		return batchDense
	case vecs >= minBatchedVecs:
		// The longest multiple of batchDense's Target within batchScores, no shorter
		// than batchDense's chunks.
		t := min(batchSqueezed.Target, max(batchDense.Target, batchScores/vecs/batchDense.Target*batchDense.Target))
		if t == batchSqueezed.Target {
			return batchSqueezed
		}
		return chunking{Target: t, Max: t, Min: t / 2}
	case s.dense:
		return decodeDense
	}
	return decodeSqueezed
}

// minBatchedVecs is the fewest query vectors for which a chunk's values are transposed
// and multiplied by all the vectors' weights at once, rather than added row by row.
const minBatchedVecs = 16

// minPart is the fewest keys worth a thread's share of their own.
const minPart = 128

// Session attends to a squeezed context as the prefix of a model's sequence: it
// is a model.Prefix (model.Options.Prefix, decode.Options.Prefix). Every Attend call selects, per layer and KV head, the
// clusters the queries need (one lookup for a batch of several tokens, one per token when
// decoding), then computes exact attention over the selected keys and the Always rows,
// split across the pool's threads in shares of equal numbers of keys (ranges of one or
// two KV heads' keys), with the parts merged by log-sum-exp. Rows appended after the
// context (AppendTail) are attended by every call, as more always-attended segments.
// Its scratch memory grows to the largest batch seen and is reused, so a decode step
// allocates nothing. A Session is used by one goroutine at a time, with the pool of the
// Forward calls it serves.
type Session struct {
	ctx   *Context
	pool  *kernels.Pool
	th    Threshold
	dense bool

	layers, kvHeads, group, hd int
	total                      int // context keys per (layer, KV head)
	qScale                     float32

	// Per lookup group (tokens of the call that share a lookup: all of them, or one
	// each in a squeezed AttendExact) and KV head, at index group*kvHeads + head.
	heads  []headState
	groups int // the current call's lookup groups
	units  []unit
	parts  []int // share p is units[parts[p]:parts[p+1]]
	// Per unit and query vector: the part's output (hd values), its log-sum-exp, and
	// chunk scores.
	partOut, partLse, scores []float32
	partSum                  []float32 // per unit and query vector: the online softmax's sum
	vecs                     int       // query vectors per KV head in the current call
	ck                       chunking  // the current call's chunks (chunkingOf)
	// Per unit: a one-thread pool and a matrix header for the score products.
	pools []*kernels.Pool
	mats  []kernels.Matrix
	// Per unit, for batches of at least minBatchedVecs vectors: a chunk's values
	// transposed, their matrix header, and the product.
	vt, prod []float32
	vmats    []kernels.Matrix
	// Per unit: the chunk's pieces.
	pieces []piece
	// Per unit, for batches of at least minBatchedVecs vectors: a chunk's f16 keys
	// gathered from several spans, and its keys or values decoded to float32 (Decoder).
	kbuf []uint16
	dbuf []float32

	// The current call's arguments (n: tokens per lookup group); exact: a dense
	// AttendExact call.
	layer, n int
	exact    bool
	q        []float32
	lookupFn func(lo, hi int)
	partFn   func(lo, hi int)

	stats Stats

	// Rows after the context (AppendTail), per layer and KV head, and their number.
	tail    [][][]tailBlock
	tailLen int
}

// NewSession prepares attention to c for m's sequences with the given budget (see
// Context.Threshold; 1 or more is dense: every key, no lookup). The pool runs the
// lookups and the attention: pass the pool of the Forward calls. It fails with
// ErrMismatch if c's shape does not fit m, or ErrBudget.
func NewSession(c *Context, m *model.Model, pool *kernels.Pool, budget float64) (*Session, error) {
	return newSession(c, &m.Config, pool, budget)
}

// newSession is NewSession for a model configuration.
func newSession(c *Context, cfg *model.Config, pool *kernels.Pool, budget float64) (*Session, error) {
	if err := c.check(cfg); err != nil {
		return nil, err
	}
	th, dense, err := c.Threshold(budget)
	if err != nil {
		return nil, err
	}
	if !dense {
		for l, layer := range c.Layers {
			for h, head := range layer {
				if head.Tree.Levels() != len(th.LogTau) {
					return nil, fmt.Errorf("%w: layer %d head %d: tree of %d levels, threshold of %d",
						ErrMismatch, l, h, head.Tree.Levels(), len(th.LogTau))
				}
			}
		}
	}
	s := &Session{
		ctx: c, pool: pool, th: th, dense: dense,
		layers: cfg.Layers, kvHeads: cfg.KVHeads, group: cfg.Heads / cfg.KVHeads, hd: cfg.HeadDim,
		total:  len(c.Tokens),
		qScale: float32(math.Sqrt(float64(cfg.HeadDim))),
		heads:  make([]headState, cfg.KVHeads),
	}
	s.lookupFn = func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s.lookup(i)
		}
	}
	s.partFn = func(lo, hi int) {
		for u := s.parts[lo]; u < s.parts[hi]; u++ {
			s.attendUnit(u)
		}
	}
	return s, nil
}

// check verifies that c fits a model with configuration cfg.
func (c *Context) check(cfg *model.Config) error {
	if len(c.Layers) != cfg.Layers {
		return fmt.Errorf("%w: %d layers, the model has %d", ErrMismatch, len(c.Layers), cfg.Layers)
	}
	if len(c.Tokens) == 0 {
		return fmt.Errorf("%w: no tokens", ErrMismatch)
	}
	for l, layer := range c.Layers {
		if len(layer) != cfg.KVHeads {
			return fmt.Errorf("%w: layer %d has %d KV heads, the model %d", ErrMismatch, l, len(layer), cfg.KVHeads)
		}
		for h, head := range layer {
			if head.Tree == nil || head.Keys == nil || head.Values == nil || head.AlwaysK == nil || head.AlwaysV == nil {
				return fmt.Errorf("%w: layer %d head %d is incomplete", ErrMismatch, l, h)
			}
			n, a := head.Tree.Len(), len(head.Always)
			switch {
			case head.Tree.Dim() != cfg.HeadDim:
				return fmt.Errorf("%w: layer %d head %d: dimension %d, the model's heads have %d",
					ErrMismatch, l, h, head.Tree.Dim(), cfg.HeadDim)
			case head.Keys.Len() != n || head.Values.Len() != n:
				return fmt.Errorf("%w: layer %d head %d: %d keys and %d values for a tree of %d",
					ErrMismatch, l, h, head.Keys.Len(), head.Values.Len(), n)
			case head.AlwaysK.Len() != a || head.AlwaysV.Len() != a:
				return fmt.Errorf("%w: layer %d head %d: %d and %d rows for %d always-attended positions",
					ErrMismatch, l, h, head.AlwaysK.Len(), head.AlwaysV.Len(), a)
			case n+a != len(c.Tokens):
				return fmt.Errorf("%w: layer %d head %d: %d clustered and %d always-attended positions for %d tokens",
					ErrMismatch, l, h, n, a, len(c.Tokens))
			}
			if d, ok := head.Keys.(*F16Rows); ok && d.Dim != cfg.HeadDim {
				return fmt.Errorf("%w: layer %d head %d: rows of %d values", ErrMismatch, l, h, d.Dim)
			}
		}
	}
	return nil
}

// Len is the number of context positions and tail rows (AppendTail): the session's own
// tokens start there.
func (s *Session) Len() int { return s.total + s.tailLen }

// Dense reports whether the session reads every key without lookups.
func (s *Session) Dense() bool { return s.dense }

// Threshold is the calibrated setting the session uses (Budget 1 when dense).
func (s *Session) Threshold() Threshold { return s.th }

// Stats returns the counts since the session was made or last reset.
func (s *Session) Stats() Stats { return s.stats }

// ResetStats zeroes the counts, to measure one request.
func (s *Session) ResetStats() { s.stats = Stats{} }

// AttendExact is Attend for n tokens computed exactly as n calls of one token each
// compute them (model.ExactPrefix): speculative decoding verifies drafts with it, so
// that a verification pass selects and weighs the keys that decoding token by token
// would. A squeezed session looks the clusters up token by token and splits each
// token's keys among the threads as a one-token call does, but runs all the tokens'
// lookups in one pool call and all their shares in another; a dense one reads
// each chunk of keys and values once for every token, but multiplies them token by
// token, with the products a one-token call uses. The statistics count a lookup per
// token, as decoding does.
func (s *Session) AttendExact(layer int, q []float32, n int, out, lse []float32) {
	if !s.dense {
		// Each token looks its clusters up and splits its keys as a one-token call
		// does; the tokens' lookups, and then their shares, run in one pool call each.
		s.attend(layer, q, n, 1, out, lse)
		return
	}
	s.exact = true
	defer func() { s.exact = false }()
	s.Attend(layer, q, n, out, lse)
}

// Attend computes the attention of n tokens' queries to the context in layer: q holds n
// tokens x Heads x HeadDim values, rotated to their positions and multiplied by
// 1/√HeadDim (so a score is q·k); out receives n x Heads x HeadDim outputs, each a
// softmax-weighted mean of the attended values, and lse n x Heads log-sum-exps of the
// scores (−Inf and a zero output where nothing was attended).
func (s *Session) Attend(layer int, q []float32, n int, out, lse []float32) {
	s.attend(layer, q, n, n, out, lse)
}

// attend is Attend for n tokens in lookup groups of per consecutive tokens (per divides
// n): each group's tokens share one lookup per KV head, and its keys are split among
// the threads on their own, so a group's results are those of an Attend call for its
// tokens alone.
func (s *Session) attend(layer int, q []float32, n, per int, out, lse []float32) {
	s.layer, s.n, s.q = layer, per, q
	s.groups = n / per
	s.vecs = per * s.group
	s.ck = s.chunkingOf()
	for len(s.heads) < s.groups*s.kvHeads {
		s.heads = append(s.heads, headState{})
	}
	s.pool.For(s.groups*s.kvHeads, 1, s.lookupFn)
	s.units = s.units[:0]
	s.parts = append(s.parts[:0], 0)
	for t := range s.groups {
		s.split(s.heads[t*s.kvHeads:(t+1)*s.kvHeads], t*s.kvHeads, s.pool.Threads())
	}
	s.reserve()
	s.pool.For(len(s.parts)-1, 1, s.partFn)
	s.merge(out, lse)
}

// split divides one lookup group's KV heads' selected keys (heads, at index first of
// s.heads), taken head after head, into one share per thread (fewer if a share would
// have fewer than minPart keys) of equal numbers of keys: the heads select different
// numbers of keys, so a thread per head would wait for the largest. It appends the
// shares to s.parts and their units to s.units. A share is one or more units, each
// within one head; units stay in head order, as merge needs. The split depends only on
// the heads' numbers of keys, so every call with the same selection sizes (a dense
// session's) splits alike.
func (s *Session) split(heads []headState, first, threads int) {
	total := 0
	for g := range heads {
		total += heads[g].keys
	}
	parts := max(1, min(threads, total/minPart))
	g, base := 0, 0 // the head of key `at` in the concatenation, and its first key there
	at := 0
	for p := range parts {
		end := total * (p + 1) / parts
		for at < end {
			for base+heads[g].keys <= at {
				base += heads[g].keys
				g++
			}
			hi := min(end, base+heads[g].keys)
			s.units = append(s.units, unit{head: first + g, lo: at - base, hi: hi - base})
			at = hi
		}
		s.parts = append(s.parts, len(s.units))
	}
}

// reserve sizes the per-unit scratch space for the current call's units.
func (s *Session) reserve() {
	nu, hd := len(s.units), s.hd
	s.partOut = grow(s.partOut, nu*s.vecs*hd)
	s.partLse = grow(s.partLse, nu*s.vecs)
	s.partSum = grow(s.partSum, nu*s.vecs)
	s.scores = grow(s.scores, nu*s.vecs*s.ck.Max)
	for len(s.pools) < nu {
		s.pools = append(s.pools, kernels.NewPool(1))
		s.mats = append(s.mats, kernels.Matrix{Type: gguf.TypeF16})
		s.vmats = append(s.vmats, kernels.Matrix{Type: gguf.TypeF32})
	}
	if cap(s.pieces) < nu*s.ck.Max {
		s.pieces = make([]piece, nu*s.ck.Max)
	}
	s.pieces = s.pieces[:nu*s.ck.Max]
	if s.batchedVecs() >= minBatchedVecs {
		s.kbuf = growU16(s.kbuf, nu*s.ck.Max*hd)
		s.dbuf = grow(s.dbuf, nu*s.ck.Max*hd)
		s.vt = grow(s.vt, nu*hd*s.ck.Max)
		s.prod = grow(s.prod, nu*s.vecs*hd)
	}
}

func growU16(b []uint16, n int) []uint16 {
	if cap(b) < n {
		return make([]uint16, n, n+n/4)
	}
	return b[:n]
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n, n+n/4)
	}
	return b[:n]
}

// lookup selects the keys of KV head i%kvHeads for lookup group i/kvHeads of the
// current call and lists them as segments in s.heads[i].
func (s *Session) lookup(i int) {
	h := &s.heads[i]
	t, g := i/s.kvHeads, i%s.kvHeads
	head := &s.ctx.Layers[s.layer][g]
	h.segs = h.segs[:0]
	gd := s.group * s.hd
	heads := s.kvHeads * gd
	q := s.q[t*s.n*heads : (t+1)*s.n*heads]
	h.qs = grow(h.qs, s.n*gd)
	for j := range s.n {
		copy(h.qs[j*gd:(j+1)*gd], q[j*heads+g*gd:j*heads+(g+1)*gd])
	}
	keys := 0
	prepK := s.prepare(&h.prepK, head.Keys, h.qs)
	h.kinds = kindsOf(head.Keys, head.Values)
	if s.dense {
		h.segs = append(h.segs, segment{head.Keys, head.Values, 0, head.Keys.Len(), prepK, &h.kinds})
		keys = head.Keys.Len()
	} else {
		h.q = grow(h.q, s.n*gd)
		copy(h.q, h.qs)
		kernels.Scale(h.q, s.qScale)
		head.Tree.Lookup(&h.search, h.q, s.group, s.th.LogTau, &h.sel)
		for _, sp := range h.sel.Spans {
			h.segs = append(h.segs, segment{head.Keys, head.Values, int(sp.Start), int(sp.End), prepK, &h.kinds})
		}
		keys = h.sel.Keys
	}
	if a := len(head.Always); a > 0 {
		h.kindsA = kindsOf(head.AlwaysK, head.AlwaysV)
		prepA := prepK
		if !sameQueries(head.AlwaysK, head.Keys) {
			prepA = s.prepare(&h.prepA, head.AlwaysK, h.qs)
		}
		h.segs = append(h.segs, segment{head.AlwaysK, head.AlwaysV, 0, a, prepA, &h.kindsA})
	}
	h.keys = keys + len(head.Always)
	s.appendTail(h, g)
	// Each KV head is counted by its own goroutine; fold the counts in merge.
}

// prepare returns the call's query vectors qs prepared for keys (GroupRows), in buf, or
// nil if they need no preparing.
func (s *Session) prepare(buf *[]float32, keys Rows, qs []float32) []float32 {
	g, ok := keys.(GroupRows)
	if !ok {
		return nil
	}
	n := g.QueriesLen(s.vecs)
	if n == 0 {
		return nil
	}
	*buf = grow(*buf, n)
	g.PrepareQueries(*buf, qs, s.vecs)
	return *buf
}

// piece is a run of rows of one segment within a chunk: rows [lo, hi) of seg, at
// offset off of the chunk.
type piece struct {
	seg         *segment
	lo, hi, off int
}

// attendUnit computes unit u's part: for every query vector of its KV head, the softmax
// over the unit's keys (online, chunk by chunk) and its log-sum-exp. A chunk gathers
// keys from consecutive spans (chunking), so that short spans (clusters of a few tens
// of keys) still make long matrix products.
//
// The spans lie at scattered addresses, each a short stream that the hardware
// prefetchers pick up late and follow one at a time. So the spans prefetchLead keys
// ahead are prefetched into the second-level cache while a chunk is computed, many
// streams at once (the first-level cache's few outstanding misses would stall them).
func (s *Session) attendUnit(u int) {
	un := s.units[u]
	h := &s.heads[un.head]
	out := s.partOut[u*s.vecs*s.hd : (u+1)*s.vecs*s.hd]
	lse := s.partLse[u*s.vecs : (u+1)*s.vecs]
	sum := s.partSum[u*s.vecs : (u+1)*s.vecs]
	clear(out)
	clear(sum)
	for v := range lse {
		lse[v] = float32(math.Inf(-1))
	}
	pf := prefetcher{s: s, h: h, lo: un.lo, hi: un.hi}
	pf.upTo(un.lo + prefetchLead)
	pieces := s.pieces[u*s.ck.Max : (u+1)*s.ck.Max][:0]
	fill := 0 // keys in pieces
	at := 0   // index of the current segment's first key in the head's order
	for si := range h.segs {
		sg := &h.segs[si]
		n := sg.hi - sg.lo
		lo, hi := max(un.lo, at), min(un.hi, at+n)
		for c := lo; c < hi; {
			flush, take := s.ck.fit(fill, hi-c)
			if flush {
				pf.upTo(c + prefetchLead)
				s.attendChunk(u, pieces, fill, out, lse, sum)
				pieces, fill = pieces[:0], 0
			}
			r := sg.lo + c - at
			pieces = append(pieces, piece{sg, r, r + take, fill})
			fill += take
			c += take
			if fill >= s.ck.Target {
				pf.upTo(c + prefetchLead)
				s.attendChunk(u, pieces, fill, out, lse, sum)
				pieces, fill = pieces[:0], 0
			}
		}
		at += n
	}
	if fill > 0 {
		s.attendChunk(u, pieces, fill, out, lse, sum)
	}
	hd := s.hd
	for v, l := range sum {
		if l > 0 {
			kernels.Scale(out[v*hd:(v+1)*hd], 1/l)
			lse[v] += float32(math.Log(float64(l)))
		}
	}
}

// fit says, for a chunk holding fill keys (fewer than Target) and a span with rest
// keys left, whether to compute the chunk first, and how many of the span's keys to add
// to it (then or after): the whole rest where it fits in Max keys, else what fills the
// chunk to Max.
func (c chunking) fit(fill, rest int) (flush bool, take int) {
	if fill+rest <= c.Max {
		return false, rest
	}
	if fill >= c.Min && rest <= c.Max {
		return true, rest
	}
	return false, c.Max - fill
}

// prefetchLead is how far ahead of the chunk being computed, in keys, the spans are
// prefetched.
const prefetchLead = 512

// prefetcher walks a unit's segments ahead of its chunks, prefetching each.
type prefetcher struct {
	s      *Session
	h      *headState
	lo, hi int // the unit's keys
	seg    int // next segment to prefetch
	at     int // index of its first key in the head's order
}

// upTo prefetches the segments (their parts within the unit) that start before key end.
func (p *prefetcher) upTo(end int) {
	end = min(end, p.hi)
	for p.seg < len(p.h.segs) && p.at < end {
		sg := &p.h.segs[p.seg]
		n := sg.hi - sg.lo
		if p.at+n > p.lo {
			r := sg.lo + max(0, p.lo-p.at)
			p.s.prefetch(sg, r, min(sg.hi, sg.lo+p.hi-p.at))
		}
		p.at += n
		p.seg++
	}
}

// prefetch starts loading rows [lo, hi) of sg's keys and values into the second-level
// cache, where they are plain f16 rows of a squeezed session (a dense one reads each
// row store from its start to its end, which the hardware prefetchers follow).
func (s *Session) prefetch(sg *segment, lo, hi int) {
	if s.dense {
		return
	}
	if k := sg.kinds.preK; k != nil {
		k.Prefetch(lo, hi)
	}
	if v := sg.kinds.preV; v != nil {
		v.Prefetch(lo, hi)
	}
}

// attendChunk folds the k keys of pieces into unit u's online softmax: out holds the
// weighted sums of values, lse the running maxima of the scores, and sum the sums of the
// weights, per vector (attendUnit normalizes them at the end).
func (s *Session) attendChunk(u int, pieces []piece, k int, out, lse, sum []float32) {
	hd, vecs := s.hd, s.vecs
	qs := s.heads[s.units[u].head].qs
	scores := s.scores[u*vecs*s.ck.Max : (u+1)*vecs*s.ck.Max][:vecs*k]
	// Scores: for f16 keys and a few vectors (decoding), the dots of each piece's rows
	// with every vector; for many vectors (a prefill), one matrix product over the
	// chunk's keys in one block (f16 keys gathered, others decoded to float32); else
	// each piece's DotsN or Dots.
	many := s.batchedVecs() >= minBatchedVecs
	allF16K, allF16V, decK, decV, allGroupV := true, true, many, many, true
	for _, p := range pieces {
		kd := p.seg.kinds
		allF16K, allF16V = allF16K && kd.f16K != nil, allF16V && kd.f16V != nil
		decK, decV = decK && kd.decK != nil, decV && kd.decV != nil
		allGroupV = allGroupV && kd.groupV != nil
	}
	if allF16K && !many {
		// An exact call multiplies each token's vectors as a one-token call does.
		if s.exact {
			g := s.group
			for i := range s.n {
				for _, p := range pieces {
					rows := p.seg.kinds.f16K.Data[p.lo*hd : p.hi*hd]
					kernels.DotRowsF16(scores[i*g*k+p.off:], k, qs[i*g*hd:(i+1)*g*hd], g, rows, hd)
				}
			}
		} else {
			for _, p := range pieces {
				rows := p.seg.kinds.f16K.Data[p.lo*hd : p.hi*hd]
				kernels.DotRowsF16(scores[p.off:], k, qs, vecs, rows, hd)
			}
		}
	} else if allF16K || decK {
		mat := &s.mats[u]
		if allF16K {
			var keys []uint16
			if len(pieces) == 1 {
				p := pieces[0]
				keys = p.seg.kinds.f16K.Data[p.lo*hd : p.hi*hd]
			} else {
				keys = s.kbuf[u*s.ck.Max*hd : (u+1)*s.ck.Max*hd][:k*hd]
				for _, p := range pieces {
					copy(keys[p.off*hd:], p.seg.kinds.f16K.Data[p.lo*hd:p.hi*hd])
				}
			}
			mat.Type, mat.Rows, mat.Cols, mat.RowBytes = gguf.TypeF16, k, hd, 2*hd
			mat.Data = f16Bytes(keys)
		} else {
			// Each row decoded once for every vector.
			keys := s.dbuf[u*s.ck.Max*hd : (u+1)*s.ck.Max*hd][:k*hd]
			for _, p := range pieces {
				p.seg.kinds.decK.Dequantize(keys[p.off*hd:(p.off+p.hi-p.lo)*hd], p.lo, p.hi)
			}
			mat.Type, mat.Rows, mat.Cols, mat.RowBytes = gguf.TypeF32, k, hd, 4*hd
			mat.Data = f32Bytes(keys)
		}
		if s.exact {
			// Each token's vectors alone, as a one-token call multiplies them.
			g := s.group
			for i := range s.n {
				kernels.MatMul(s.pools[u], scores[i*g*k:(i+1)*g*k], mat, qs[i*g*hd:(i+1)*g*hd], g)
			}
		} else {
			kernels.MatMul(s.pools[u], scores, mat, qs, vecs)
		}
	} else {
		// Rows that serve every vector in one pass get them all (their results do not
		// depend on the grouping, so an exact call may pass its tokens together).
		for _, p := range pieces {
			if g := p.seg.kinds.groupK; g != nil {
				g.DotsN(scores[p.off:], k, qs, p.seg.prep, vecs, p.lo, p.hi)
				continue
			}
			for v := range vecs {
				p.seg.k.Dots(scores[v*k+p.off:v*k+p.off+p.hi-p.lo], qs[v*hd:(v+1)*hd], p.lo, p.hi)
			}
		}
	}
	// Many vectors multiply the chunk's values decoded once (batched); fewer add them
	// row by row: every vector at once by kernels.AccumulateF16 when they are f16
	// (bitwise what Accumulate gives).
	batched := decV
	fused := allF16V && !many
	for v := range vecs {
		// Online softmax: the weights are exp(score − running maximum); the output
		// and the sum so far are rescaled when the maximum grows.
		sc := scores[v*k : (v+1)*k]
		o := out[v*hd : (v+1)*hd]
		if mc := kernels.MaxF32(sc); mc > lse[v] {
			if l := lse[v]; !math.IsInf(float64(l), -1) {
				a := float32(math.Exp(float64(l - mc)))
				kernels.Scale(o, a)
				sum[v] *= a
			}
			lse[v] = mc
		}
		sum[v] += kernels.ExpSum(sc, lse[v])
		if !batched && !fused && !allGroupV {
			for _, p := range pieces {
				if p.seg.kinds.groupV == nil {
					p.seg.v.Accumulate(o, sc[p.off:p.off+p.hi-p.lo], p.lo, p.hi)
				}
			}
		}
	}
	if !batched && !fused {
		// Values that serve every vector in one pass, after all the vectors' rescaling.
		for _, p := range pieces {
			if g := p.seg.kinds.groupV; g != nil {
				g.AccumulateN(out, hd, scores[p.off:], k, vecs, p.lo, p.hi)
			}
		}
	}
	if fused {
		for _, p := range pieces {
			rows := p.seg.kinds.f16V.Data[p.lo*hd : p.hi*hd]
			kernels.AccumulateF16(out, hd, scores[p.off:], k, rows, hd, p.hi-p.lo, vecs)
		}
		return
	}
	if !batched {
		return
	}
	// out += P V for every vector at once: the chunk's values transposed to f32
	// (HeadDim rows of k), one matrix product, then one add.
	vt := s.vt[u*hd*s.ck.Max : (u+1)*hd*s.ck.Max][:hd*k]
	for _, p := range pieces {
		rows := s.dbuf[u*s.ck.Max*hd : (u+1)*s.ck.Max*hd][:(p.hi-p.lo)*hd]
		p.seg.kinds.decV.Dequantize(rows, p.lo, p.hi)
		for r := range p.hi - p.lo {
			c := p.off + r
			for d, x := range rows[r*hd : (r+1)*hd] {
				vt[d*k+c] = x
			}
		}
	}
	vm := &s.vmats[u]
	vm.Rows, vm.Cols, vm.RowBytes = hd, k, 4*k
	vm.Data = f32Bytes(vt)
	prod := s.prod[u*vecs*hd : (u+1)*vecs*hd]
	if s.exact {
		g := s.group
		for i := range s.n {
			kernels.MatMul(s.pools[u], prod[i*g*hd:(i+1)*g*hd], vm, scores[i*g*k:(i+1)*g*k], g)
		}
	} else {
		kernels.MatMul(s.pools[u], prod, vm, scores, vecs)
	}
	kernels.Add(out, prod)
}

// batchedVecs is the number of query vectors whose count decides between adding a
// chunk's values row by row and one matrix product: the call's, or one token's in an
// exact call (which must choose as a one-token call does).
func (s *Session) batchedVecs() int {
	if s.exact {
		return s.group
	}
	return s.vecs
}

// f16Bytes views half floats as bytes, for a kernels.Matrix.
func f16Bytes(x []uint16) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 2*len(x))
}

// f32Bytes views floats as bytes, for a kernels.Matrix.
func f32Bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
}

// merge combines the units' parts of each lookup group's KV heads into out and lse and
// adds the call's lookups to the statistics.
func (s *Session) merge(out, lse []float32) {
	hd, vecs, group := s.hd, s.vecs, s.group
	heads := s.kvHeads * group
	first := 0
	for hi := range s.groups * s.kvHeads {
		t, g := hi/s.kvHeads, hi%s.kvHeads
		last := first
		for last < len(s.units) && s.units[last].head == hi {
			last++
		}
		for v := range vecs {
			i, gh := t*s.n+v/group, v%group
			qi := i*heads + g*group + gh
			dst := out[qi*hd : (qi+1)*hd]
			if last-first == 1 {
				copy(dst, s.partOut[(first*vecs+v)*hd:][:hd])
				lse[qi] = s.partLse[first*vecs+v]
				continue
			}
			m := float32(math.Inf(-1))
			for u := first; u < last; u++ {
				m = max(m, s.partLse[u*vecs+v])
			}
			clear(dst)
			if math.IsInf(float64(m), -1) {
				lse[qi] = m
				continue
			}
			var total float32
			for u := first; u < last; u++ {
				l := s.partLse[u*vecs+v]
				if math.IsInf(float64(l), -1) {
					continue
				}
				w := float32(math.Exp(float64(l - m)))
				total += w
				kernels.Axpy(w, s.partOut[(u*vecs+v)*hd:][:hd], dst)
			}
			kernels.Scale(dst, 1/total)
			lse[qi] = m + float32(math.Log(float64(total)))
		}
		first = last
		h := &s.heads[hi]
		per := 1 // lookups this call stands for
		if s.exact {
			per = s.n
		}
		s.stats.Lookups += per
		s.stats.KeysRead += int64(per * (h.keys - s.tailLen))
		s.stats.Keys += int64(per * s.total)
		if !s.dense {
			s.stats.Centroids += int64(h.sel.Centroids)
		}
	}
}

var _ model.ExactPrefix = (*Session)(nil)
