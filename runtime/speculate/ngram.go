package speculate

// NGram drafts by prompt lookup: it finds the longest suffix of the sequence (up to
// MaxN tokens, at least MinN) that occurred before, in the generation's own sequence or
// in the fixed context, and proposes the tokens that followed. Code and answers about a
// document repeat their context's identifiers and phrases, so the tokens after a
// repeated n-gram often repeat too. The fixed context is indexed once (NewNGram), the
// sequence incrementally as it grows; a draft costs a few map lookups and no weight
// reads.
//
// The latest occurrences of the matched n-gram (up to MaxOccurrences: the sequence's,
// latest first, then the context's) vote on each drafted token: the draft follows the
// token most of the occurrences that agree with it so far continue with (a tie goes to
// the latest occurrence), so a phrase the context repeats in several ways yields its
// usual continuation rather than its last one.
//
// How likely a drafted token is accepted depends mostly on how long the match behind it
// is: the tokens that agree with an occurrence before it (the n-gram, extended backwards
// as far as it goes, plus the drafted tokens before it, which extend the match if they
// are accepted) and on how many occurrences vote for it. The NGram keeps decayed
// acceptance counts per bucket of match length and of votes, and reports each token's
// estimate (Confidence), so that a Policy keeps the part of a draft worth verifying.
// An NGram may serve one generation at a time; the context index is read-only after
// NewNGram, so generations on other goroutines need NGrams of their own only for the
// sequence index and statistics: Clone shares the context index.
type NGram struct {
	minN, maxN int
	context    []int32
	ctxIndex   []map[uint64]int32 // by n-minN: n-gram hash -> position after its last occurrence
	// By n-minN and position p: the position after the previous occurrence of the
	// n-gram that ends before p (0: none).
	ctxPrev [][]int32

	indexed  int // tokens of the generation's sequence indexed so far
	seqIndex []map[uint64]int32
	seqPrev  [][]int32

	// Decayed counts of accepted and rejected drafted tokens per statistics cell (a
	// bucket of match length and of votes: cell), kept across generations.
	accepted, rejected [cells]float64

	// The last draft: each token's cell and confidence (empty: no draft).
	lastCells []int
	conf      []float64

	occ, alive []occurrence // Draft's scratch
}

// Default n-gram lengths of NewNGram.
const (
	DefaultMinN = 1
	DefaultMaxN = 4
)

// MaxOccurrences is the most occurrences of the matched n-gram that vote on a draft.
const MaxOccurrences = 8

// maxMatch caps the match lengths an NGram measures: beyond it, longer matches are not
// told apart.
const maxMatch = 32

// Statistics cells: lengthBuckets buckets of match length by voteBuckets of votes.
const (
	voteBuckets = 3 // 1, 2, 3 or more occurrences
	cells       = len(lengthBucketStarts) * voteBuckets
)

// lengthBucketStarts are the smallest match lengths of the length buckets.
var lengthBucketStarts = [...]int{1, 2, 3, 4, 5, 7, 10, 16}

// cell returns the statistics cell of a drafted token behind a match of length n with
// votes occurrences voting for it.
func cell(n, votes int) int {
	b := 0
	for b+1 < len(lengthBucketStarts) && n >= lengthBucketStarts[b+1] {
		b++
	}
	return b*voteBuckets + min(votes, voteBuckets) - 1
}

// priorWeight is how many drafted tokens the prior of a cell is worth.
const priorWeight = 2

// priorRate is the prior acceptance rate of a token behind a match of n tokens: n/(n+1.5),
// from 0.4 for a one-token match to above 0.9 for 16 tokens or more.
func priorRate(n int) float64 { return float64(n) / (float64(n) + 1.5) }

// NewNGram indexes context (the fixed context's tokens; nil for none) for n-grams of
// minN to maxN tokens (0 selects DefaultMinN and DefaultMaxN; minN is at least 1 and
// maxN at least minN).
func NewNGram(context []int32, minN, maxN int) *NGram {
	if minN <= 0 {
		minN = DefaultMinN
	}
	if maxN <= 0 {
		maxN = max(DefaultMaxN, minN)
	}
	maxN = max(maxN, minN)
	g := &NGram{minN: minN, maxN: maxN, context: context}
	g.ctxIndex = make([]map[uint64]int32, maxN-minN+1)
	g.ctxPrev = make([][]int32, maxN-minN+1)
	for i := range g.ctxIndex {
		g.ctxIndex[i] = make(map[uint64]int32)
		g.ctxPrev[i] = make([]int32, len(context))
	}
	g.initSequence()
	for end := minN; end < len(context); end++ {
		g.index(g.ctxIndex, g.ctxPrev, context, end)
	}
	return g
}

// Clone returns an NGram sharing g's context index, with an empty sequence index and
// fresh acceptance statistics.
func (g *NGram) Clone() *NGram {
	c := &NGram{minN: g.minN, maxN: g.maxN, context: g.context, ctxIndex: g.ctxIndex, ctxPrev: g.ctxPrev}
	c.initSequence()
	return c
}

// initSequence makes the per-generation state (the sequence index) and the prior
// statistics.
func (g *NGram) initSequence() {
	k := g.maxN - g.minN + 1
	g.seqIndex = make([]map[uint64]int32, k)
	g.seqPrev = make([][]int32, k)
	for i := range g.seqIndex {
		g.seqIndex[i] = make(map[uint64]int32)
	}
	for b, n := range lengthBucketStarts {
		for v := range voteBuckets {
			c := b*voteBuckets + v
			g.accepted[c] = priorWeight * priorRate(n)
			g.rejected[c] = priorWeight - g.accepted[c]
		}
	}
}

// Confidence returns, for each token of the last draft, the estimated probability that
// it is accepted if the tokens before it are (speculate.Confident). The slice is valid
// until the next Draft.
func (g *NGram) Confidence() []float64 { return g.conf }

// Verified records how the last draft fared (speculate.Verified): see Settle.
func (g *NGram) Verified(drafted, accepted int) {
	g.Settle(g.Ticket(), drafted, accepted)
	g.lastCells, g.conf = g.lastCells[:0], g.conf[:0]
}

// Ticket names the last draft (speculate.Settler).
func (g *NGram) Ticket() Ticket {
	var t Ticket
	for i, c := range g.lastCells[:min(len(g.lastCells), maxTicket)] {
		t.cells[i] = uint8(c)
		t.n++
	}
	return t
}

// Settle records how t's draft fared (speculate.Settler): its first accepted tokens
// were accepted, the one after them (if drafted) rejected; the tokens after a rejection
// tell nothing.
func (g *NGram) Settle(t Ticket, drafted, accepted int) {
	for i, c := range t.cells[:min(int(t.n), drafted)] {
		g.accepted[c] *= decay
		g.rejected[c] *= decay
		if i < accepted {
			g.accepted[c]++
			continue
		}
		g.rejected[c]++
		break
	}
}

// Name returns "ngram".
func (g *NGram) Name() string { return "ngram" }

// Reset forgets the previous generation's sequence (its statistics carry over).
func (g *NGram) Reset(_ *Target, prompt []int32) {
	g.indexed = 0
	g.lastCells, g.conf = g.lastCells[:0], g.conf[:0]
	for i, m := range g.seqIndex {
		clear(m)
		g.seqPrev[i] = g.seqPrev[i][:0]
	}
}

// Draft proposes up to limit tokens that followed the latest occurrences of the longest
// suffix of seq that occurred before (see the type's doc).
func (g *NGram) Draft(dst, seq []int32, limit int) []int32 {
	g.lastCells, g.conf = g.lastCells[:0], g.conf[:0]
	if limit <= 0 {
		return dst
	}
	// Index the n-grams that end before seq's last token: each has a known follower.
	if g.indexed > len(seq) {
		g.Reset(nil, nil)
	}
	for i := range g.seqPrev {
		for len(g.seqPrev[i]) < len(seq) {
			g.seqPrev[i] = append(g.seqPrev[i], 0)
		}
	}
	for end := max(g.indexed, g.minN); end < len(seq); end++ {
		g.index(g.seqIndex, g.seqPrev, seq, end)
	}
	g.indexed = max(g.indexed, len(seq))
	for n := min(g.maxN, len(seq)); n >= g.minN; n-- {
		key := seq[len(seq)-n:]
		h := hashTokens(key)
		occ := g.collect(g.occ[:0], g.seqIndex, g.seqPrev, seq, n, h, key)
		occ = g.collect(occ, g.ctxIndex, g.ctxPrev, g.context, n, h, key)
		g.occ = occ
		if len(occ) > 0 {
			for i := range occ {
				occ[i].match = matchLen(seq, occ[i].s, occ[i].p)
			}
			return g.vote(dst, limit)
		}
	}
	return dst
}

// occurrence is an earlier occurrence of the matched n-gram: s[p] follows it, and the
// match tokens before s[p] equal seq's last ones.
type occurrence struct {
	s        []int32
	p, match int
}

// collect appends to occ the occurrences of key (n tokens, hash h) in s, latest first,
// up to MaxOccurrences in all.
func (g *NGram) collect(occ []occurrence, idx []map[uint64]int32, prev [][]int32, s []int32, n int, h uint64, key []int32) []occurrence {
	p, ok := idx[n-g.minN][h]
	if !ok {
		return occ
	}
	for p > 0 && len(occ) < MaxOccurrences {
		if matches(s, int(p)-n, key) {
			occ = append(occ, occurrence{s: s, p: int(p)})
		}
		p = prev[n-g.minN][p]
	}
	return occ
}

// vote appends up to limit tokens, each the one most of the occurrences that still
// agree with the draft continue with (ties: the earliest in g.occ), with its cell and
// confidence: the match behind it is the longest among the occurrences voting for it.
func (g *NGram) vote(dst []int32, limit int) []int32 {
	alive := append(g.alive[:0], g.occ...)
	for range limit {
		best, votes, match := int32(-1), 0, 0
		for i, o := range alive {
			if o.p >= len(o.s) || o.s[o.p] == best {
				continue
			}
			t := o.s[o.p]
			c, m := 0, 0
			for _, o2 := range alive[i:] {
				if o2.p < len(o2.s) && o2.s[o2.p] == t {
					c++
					m = max(m, o2.match)
				}
			}
			if c > votes {
				best, votes, match = t, c, m
			}
		}
		if votes == 0 {
			break
		}
		dst = append(dst, best)
		c := cell(match, votes)
		g.lastCells = append(g.lastCells, c)
		g.conf = append(g.conf, g.accepted[c]/(g.accepted[c]+g.rejected[c]))
		k := 0
		for _, o := range alive {
			if o.p < len(o.s) && o.s[o.p] == best {
				alive[k] = occurrence{s: o.s, p: o.p + 1, match: min(o.match+1, maxMatch)}
				k++
			}
		}
		alive = alive[:k]
	}
	g.alive = alive
	return dst
}

// matchLen returns how many tokens before s[p] equal seq's last ones, up to maxMatch.
func matchLen(seq, s []int32, p int) int {
	n := 0
	for n < maxMatch && n < p && n < len(seq) && s[p-1-n] == seq[len(seq)-1-n] {
		n++
	}
	return n
}

// index records the n-grams of every length ending just before position end of s
// (s[end-n:end]) as followed by position end, each linked to its previous occurrence.
func (g *NGram) index(idx []map[uint64]int32, prev [][]int32, s []int32, end int) {
	for n := g.minN; n <= g.maxN && n <= end; n++ {
		h := hashTokens(s[end-n : end])
		prev[n-g.minN][end] = idx[n-g.minN][h]
		idx[n-g.minN][h] = int32(end)
	}
}

// matches reports whether s[at:at+len(key)] equals key (hashes may collide).
func matches(s []int32, at int, key []int32) bool {
	if at < 0 || at+len(key) > len(s) {
		return false
	}
	for i, t := range key {
		if s[at+i] != t {
			return false
		}
	}
	return true
}

// hashTokens is FNV-1a over the tokens' 32-bit values.
func hashTokens(ts []int32) uint64 {
	h := uint64(14695981039346656037)
	for _, t := range ts {
		for s := 0; s < 32; s += 8 {
			h ^= uint64(uint32(t)>>s) & 0xff
			h *= 1099511628211
		}
	}
	return h
}

var (
	_ Confident = (*NGram)(nil)
	_ Verified  = (*NGram)(nil)
	_ Settler   = (*NGram)(nil)
)
