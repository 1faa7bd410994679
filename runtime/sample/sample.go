package sample

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// DefaultRepeatLastN is the repetition-penalty window used when Options.RepeatLastN is 0
// (llama.cpp's default).
const DefaultRepeatLastN = 64

// ErrNoCandidates means the logits hold no finite value (all NaN or -Inf), so no token
// can be chosen. A model that produces such logits is broken.
var ErrNoCandidates = errors.New("sample: logits contain no finite value")

// ErrOptions means an Options field is out of range; the error names the field.
var ErrOptions = errors.New("sample: invalid options")

// pcgStream is the second PCG word; the user's seed is the first. Any fixed odd
// constant works; this one is 2^64 divided by the golden ratio.
const pcgStream = 0x9e3779b97f4a7c15

// Options configures a Sampler. The zero value is greedy decoding with no penalty.
type Options struct {
	// Temperature divides the logits of the surviving candidates before the draw.
	// 0 means greedy: the argmax (after the repetition penalty), no randomness.
	// Must not be negative.
	Temperature float32
	// TopK keeps the K most likely tokens. 0 (or K >= vocabulary size) keeps all.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability sums to at
	// least TopP (nucleus sampling). 0 or 1 keeps all. Must lie in [0, 1].
	TopP float32
	// MinP keeps tokens whose probability is at least MinP times that of the most
	// likely token. 0 keeps all. Must lie in [0, 1].
	MinP float32
	// RepeatPenalty penalises tokens among the last RepeatLastN accepted ones: a
	// positive logit is divided by it and a negative one multiplied (llama.cpp and
	// CTRL semantics), once per distinct token. 0 or 1 means no penalty. Must not be
	// negative.
	RepeatPenalty float32
	// RepeatLastN is the size of the penalty window in tokens. 0 means
	// DefaultRepeatLastN. Must not be negative.
	RepeatLastN int
	// Seed seeds the PCG generator. Every value, 0 included, is a fixed seed: the
	// caller picks a random one if it wants varied output.
	Seed uint64
}

// Validate reports the first out-of-range field as an error wrapping ErrOptions.
func (o Options) Validate() error {
	switch {
	case o.Temperature < 0 || isNaN32(o.Temperature):
		return fmt.Errorf("%w: temperature %v must be >= 0", ErrOptions, o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("%w: top-k %d must be >= 0", ErrOptions, o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return fmt.Errorf("%w: top-p %v must be in [0, 1]", ErrOptions, o.TopP)
	case !(o.MinP >= 0 && o.MinP <= 1):
		return fmt.Errorf("%w: min-p %v must be in [0, 1]", ErrOptions, o.MinP)
	case o.RepeatPenalty < 0 || isNaN32(o.RepeatPenalty):
		return fmt.Errorf("%w: repeat penalty %v must be >= 0", ErrOptions, o.RepeatPenalty)
	case o.RepeatLastN < 0:
		return fmt.Errorf("%w: repeat window %d must be >= 0", ErrOptions, o.RepeatLastN)
	}
	return nil
}

// Greedy reports whether the options choose the argmax without randomness.
func (o Options) Greedy() bool { return o.Temperature == 0 }

// Sampler chooses tokens from logits. It is not safe for concurrent use.
type Sampler struct {
	opts    Options
	rng     *rand.Rand
	recent  []int32 // ring buffer of the last accepted tokens, capacity = window
	head    int     // next write position in recent once it is full
	window  int
	scratch []int32   // sorted copy of recent, for de-duplication
	idx     []int32   // candidate token ids, reused across calls
	weights []float64 // unnormalised probabilities of the candidates, reused
}

// New returns a Sampler for opts, or an error wrapping ErrOptions.
func New(opts Options) (*Sampler, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	window := opts.RepeatLastN
	if window == 0 {
		window = DefaultRepeatLastN
	}
	return &Sampler{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(opts.Seed, pcgStream)),
		recent:  make([]int32, 0, window),
		window:  window,
		scratch: make([]int32, 0, window),
	}, nil
}

// Options returns the options the Sampler was made with.
func (s *Sampler) Options() Options { return s.opts }

// Accept records tokens as generated (or as part of the prompt), for the repetition
// penalty. Only the last RepeatLastN are kept.
func (s *Sampler) Accept(ids ...int32) {
	for _, id := range ids {
		if len(s.recent) < s.window {
			s.recent = append(s.recent, id)
			continue
		}
		s.recent[s.head] = id
		s.head = (s.head + 1) % s.window
	}
}

// Reset forgets the accepted tokens and reseeds the generator with the original seed,
// so the Sampler behaves as if new.
func (s *Sampler) Reset() {
	s.recent = s.recent[:0]
	s.head = 0
	s.rng = rand.New(rand.NewPCG(s.opts.Seed, pcgStream))
}

// Sample returns the id of the chosen token. It modifies logits in place (the
// repetition penalty is applied to them) and keeps no reference to the slice. It does
// not Accept the token: the caller does, once it is committed.
func (s *Sampler) Sample(logits []float32) (int32, error) {
	if penaltyActive(s.opts.RepeatPenalty) {
		s.scratch = append(s.scratch[:0], s.recent...)
		applyRepeatPenalty(logits, s.scratch, s.opts.RepeatPenalty)
	}
	if s.opts.Greedy() {
		id := argmax(logits)
		if id < 0 {
			return 0, ErrNoCandidates
		}
		return id, nil
	}

	idx := s.candidates(logits)
	if len(idx) == 0 {
		return 0, ErrNoCandidates
	}
	idx = topK(logits, idx, s.opts.TopK)
	idx = topP(logits, idx, s.opts.TopP)
	idx = minP(logits, idx, s.opts.MinP)
	if cap(s.weights) < len(idx) {
		s.weights = make([]float64, len(logits))
	}
	return draw(logits, idx, s.weights[:len(idx)], s.opts.Temperature, s.rng.Float64()), nil
}

// candidates fills the reusable index buffer with every token whose logit is finite
// or +Inf (NaN and -Inf have probability 0).
func (s *Sampler) candidates(logits []float32) []int32 {
	if cap(s.idx) < len(logits) {
		s.idx = make([]int32, 0, len(logits))
	}
	idx := s.idx[:0]
	for i, l := range logits {
		if l == l && !math.IsInf(float64(l), -1) {
			idx = append(idx, int32(i))
		}
	}
	return idx
}

func penaltyActive(p float32) bool { return p != 0 && p != 1 }

func isNaN32(x float32) bool { return x != x }

// applyRepeatPenalty penalises each distinct in-range id of recent once. It sorts recent
// in place.
func applyRepeatPenalty(logits []float32, recent []int32, penalty float32) {
	slices.Sort(recent)
	for i, id := range recent {
		if i > 0 && recent[i-1] == id {
			continue
		}
		if id < 0 || int(id) >= len(logits) {
			continue
		}
		if l := logits[id]; l > 0 {
			logits[id] = l / penalty
		} else {
			logits[id] = l * penalty
		}
	}
}

// argmax returns the index of the largest non-NaN logit, the lowest index on ties, or
// -1 when there is none or all are -Inf.
func argmax(logits []float32) int32 {
	best := int32(-1)
	bestL := float32(math.Inf(-1))
	for i, l := range logits {
		if l > bestL {
			best, bestL = int32(i), l
		}
	}
	return best
}

// before is the candidate order: higher logit first, lower id on ties. It is a strict
// total order over non-NaN logits, so selection and sorting are deterministic.
func before(logits []float32, a, b int32) bool {
	la, lb := logits[a], logits[b]
	return la > lb || (la == lb && a < b)
}

func sortDesc(logits []float32, idx []int32) {
	slices.SortFunc(idx, func(a, b int32) int {
		switch {
		case before(logits, a, b):
			return -1
		case before(logits, b, a):
			return 1
		}
		return 0
	})
}

// selectTop rearranges idx so that its first k entries are the k best by before (in
// no particular order). It is Hoare's quickselect with a median-of-three pivot.
func selectTop(logits []float32, idx []int32, k int) {
	lo, hi := 0, len(idx)-1
	for lo < hi && k > lo && k <= hi {
		mid := lo + (hi-lo)/2
		// Order idx[lo], idx[mid], idx[hi] and use the median as the pivot.
		if before(logits, idx[mid], idx[lo]) {
			idx[mid], idx[lo] = idx[lo], idx[mid]
		}
		if before(logits, idx[hi], idx[lo]) {
			idx[hi], idx[lo] = idx[lo], idx[hi]
		}
		if before(logits, idx[hi], idx[mid]) {
			idx[hi], idx[mid] = idx[mid], idx[hi]
		}
		pivot := idx[mid]
		i, j := lo, hi
		for i <= j {
			for before(logits, idx[i], pivot) {
				i++
			}
			for before(logits, pivot, idx[j]) {
				j--
			}
			if i <= j {
				idx[i], idx[j] = idx[j], idx[i]
				i++
				j--
			}
		}
		// Now idx[lo..j] are all not after the pivot and idx[i..hi] not before it.
		switch {
		case k <= j+1:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}

// topK keeps the k best candidates (all when k is 0 or not smaller than the set).
func topK(logits []float32, idx []int32, k int) []int32 {
	if k <= 0 || k >= len(idx) {
		return idx
	}
	selectTop(logits, idx, k)
	return idx[:k]
}

// maxLogit returns the largest logit among the candidates (idx is not empty).
func maxLogit(logits []float32, idx []int32) float32 {
	m := logits[idx[0]]
	for _, id := range idx[1:] {
		m = max(m, logits[id])
	}
	return m
}

// topP keeps the shortest run of best candidates whose softmax probability (over the
// current candidates, temperature 1) reaches p. It sorts only as much of idx as it must:
// the best 32, then 128, and so on, each found by quickselect. The result is sorted.
func topP(logits []float32, idx []int32, p float32) []int32 {
	if p <= 0 || p >= 1 || len(idx) <= 1 {
		return idx
	}
	m := float64(maxLogit(logits, idx))
	if math.IsInf(m, 1) {
		return keepInf(logits, idx)
	}
	var sum float64
	for _, id := range idx {
		sum += math.Exp(float64(logits[id]) - m)
	}
	target := float64(p) * sum
	var cum float64
	sorted := 0
	for c := min(len(idx), 32); ; c = min(len(idx), c*4) {
		selectTop(logits, idx[sorted:], c-sorted)
		sortDesc(logits, idx[sorted:c])
		for i := sorted; i < c; i++ {
			cum += math.Exp(float64(logits[idx[i]]) - m)
			if cum >= target {
				return idx[:i+1]
			}
		}
		sorted = c
		if c == len(idx) {
			return idx
		}
	}
}

// minP keeps candidates whose probability is at least p times the largest, that is
// whose logit is at least max + ln p. It keeps the order of idx.
func minP(logits []float32, idx []int32, p float32) []int32 {
	if p <= 0 || len(idx) <= 1 {
		return idx
	}
	m := float64(maxLogit(logits, idx))
	if math.IsInf(m, 1) {
		return keepInf(logits, idx)
	}
	threshold := m + math.Log(float64(p))
	out := idx[:0]
	for _, id := range idx {
		if float64(logits[id]) >= threshold {
			out = append(out, id)
		}
	}
	return out
}

// keepInf keeps the candidates whose logit is +Inf: they share all the probability.
func keepInf(logits []float32, idx []int32) []int32 {
	out := idx[:0]
	for _, id := range idx {
		if math.IsInf(float64(logits[id]), 1) {
			out = append(out, id)
		}
	}
	return out
}

// draw picks a candidate with probability proportional to exp((logit - max) / temp),
// using u, uniform in [0, 1). idx is not empty; weights is scratch of len(idx).
func draw(logits []float32, idx []int32, weights []float64, temp float32, u float64) int32 {
	m := float64(maxLogit(logits, idx))
	if math.IsInf(m, 1) {
		idx = keepInf(logits, idx)
		return idx[int(u*float64(len(idx)))]
	}
	t := float64(temp)
	var total float64
	for i, id := range idx {
		w := math.Exp((float64(logits[id]) - m) / t)
		weights[i] = w
		total += w
	}
	target := u * total
	var cum float64
	for i, id := range idx {
		cum += weights[i]
		if cum > target {
			return id
		}
	}
	return idx[len(idx)-1] // rounding left target at the very top
}
