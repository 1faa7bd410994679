package speculate

// NGram drafts by prompt lookup: it finds the longest suffix of the sequence (up to
// MaxN tokens, at least MinN) that occurred before, in the generation's own sequence or
// in the fixed context, and proposes the tokens that followed that occurrence. Code and
// answers about a document repeat their context's identifiers and phrases, so the
// tokens after a repeated n-gram often repeat too. The fixed context is indexed once
// (NewNGram), the sequence incrementally as it grows; a draft costs a few map lookups
// and no weight reads.
//
// Among occurrences, the sequence's own (the most recent one) wins over the context's
// (its last one). Drafts from longer matches are usually accepted more often: the NGram
// keeps acceptance statistics per match length and reports the one of its last draft
// (Confidence), so that a Policy trims each draft to what its match length is worth.
// An NGram may serve one generation at a time; the context index is read-only after
// NewNGram, so generations on other goroutines need NGrams of their own only for the
// sequence index and statistics: Clone shares the context index.
type NGram struct {
	minN, maxN int
	context    []int32
	ctxIndex   []map[uint64]int32 // by n-minN: n-gram hash -> position after its last occurrence

	indexed  int // tokens of the generation's sequence indexed so far
	seqIndex []map[uint64]int32

	// By match length n-minN: decayed counts of accepted tokens and of rejections of
	// the drafts that came from a match of that length (kept across generations).
	accepted, rejected []float64
	last               int // the match length of the last draft (0: none)
}

// Default n-gram lengths of NewNGram.
const (
	DefaultMinN = 1
	DefaultMaxN = 4
)

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
	for i := range g.ctxIndex {
		g.ctxIndex[i] = make(map[uint64]int32)
	}
	g.initSequence()
	for end := minN; end < len(context); end++ {
		g.index(g.ctxIndex, context, end)
	}
	return g
}

// Clone returns an NGram sharing g's context index, with an empty sequence index and
// fresh acceptance statistics.
func (g *NGram) Clone() *NGram {
	c := &NGram{minN: g.minN, maxN: g.maxN, context: g.context, ctxIndex: g.ctxIndex}
	c.initSequence()
	return c
}

// initSequence makes the per-generation state: the sequence index and the statistics.
func (g *NGram) initSequence() {
	k := g.maxN - g.minN + 1
	g.seqIndex = make([]map[uint64]int32, k)
	for i := range g.seqIndex {
		g.seqIndex[i] = make(map[uint64]int32)
	}
	g.accepted, g.rejected = make([]float64, k), make([]float64, k)
	for i := range k {
		g.accepted[i], g.rejected[i] = priorAccepted, priorRejected
	}
}

// Confidence is the estimated acceptance rate of drafts from matches as long as the last
// draft's (speculate.Confident).
func (g *NGram) Confidence() float64 {
	if g.last == 0 {
		return 0
	}
	i := g.last - g.minN
	return g.accepted[i] / (g.accepted[i] + g.rejected[i])
}

// Verified records how the last draft fared (speculate.Verified).
func (g *NGram) Verified(drafted, accepted int) {
	if g.last == 0 {
		return
	}
	i := g.last - g.minN
	g.accepted[i] = decay*g.accepted[i] + float64(accepted)
	g.rejected[i] *= decay
	if accepted < drafted {
		g.rejected[i]++
	}
}

// Name returns "ngram".
func (g *NGram) Name() string { return "ngram" }

// Reset forgets the previous generation's sequence (its statistics carry over).
func (g *NGram) Reset(_ *Target, prompt []int32) {
	g.indexed, g.last = 0, 0
	for _, m := range g.seqIndex {
		clear(m)
	}
}

// Draft proposes up to limit tokens that followed the longest earlier occurrence of seq's
// last n tokens.
func (g *NGram) Draft(dst, seq []int32, limit int) []int32 {
	g.last = 0
	if limit <= 0 {
		return dst
	}
	// Index the n-grams that end before seq's last token: each has a known follower.
	if g.indexed > len(seq) {
		g.Reset(nil, nil)
	}
	for end := max(g.indexed, g.minN); end < len(seq); end++ {
		g.index(g.seqIndex, seq, end)
	}
	g.indexed = max(g.indexed, len(seq))
	for n := min(g.maxN, len(seq)); n >= g.minN; n-- {
		key := seq[len(seq)-n:]
		h := hashTokens(key)
		if p, ok := g.seqIndex[n-g.minN][h]; ok && matches(seq, int(p)-n, key) {
			g.last = n
			return appendRun(dst, seq, int(p), limit)
		}
		if p, ok := g.ctxIndex[n-g.minN][h]; ok && matches(g.context, int(p)-n, key) {
			g.last = n
			return appendRun(dst, g.context, int(p), limit)
		}
	}
	return dst
}

// index records the n-grams of every length ending just before position end of s
// (s[end-n:end]) as followed by position end.
func (g *NGram) index(idx []map[uint64]int32, s []int32, end int) {
	for n := g.minN; n <= g.maxN && n <= end; n++ {
		idx[n-g.minN][hashTokens(s[end-n:end])] = int32(end)
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

// appendRun appends up to limit tokens of s from position p.
func appendRun(dst, s []int32, p, limit int) []int32 {
	return append(dst, s[p:min(len(s), p+limit)]...)
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
)
