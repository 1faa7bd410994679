package speculate

import (
	"math"
	"time"
)

// Stats counts what speculation did in one generation.
type Stats struct {
	// Passes is the number of decoding forward passes, with or without a draft (the
	// prompt's prefill is not counted); Verifications those that carried a draft.
	Passes, Verifications int
	// Drafted is the number of drafted tokens verified; Accepted how many of them
	// plain decoding also produced.
	Drafted, Accepted int
	// Sources breaks Verifications, Drafted and Accepted down by draft source, in the
	// order of the Policy's drafters.
	Sources []SourceStats
}

// SourceStats counts one draft source's verification passes and tokens.
type SourceStats struct {
	Name                             string
	Verifications, Drafted, Accepted int
}

// AcceptanceRate is Accepted / Drafted (0 when nothing was drafted).
func (s SourceStats) AcceptanceRate() float64 { return ratio(s.Accepted, s.Drafted) }

// TokensPerVerification is the tokens a verification pass committed on average: its
// accepted drafts and the token the model chose after them.
func (s SourceStats) TokensPerVerification() float64 {
	return ratio(s.Accepted+s.Verifications, s.Verifications)
}

// AcceptanceRate is Accepted / Drafted over every source (0 when nothing was drafted).
func (s Stats) AcceptanceRate() float64 { return ratio(s.Accepted, s.Drafted) }

// TokensPerVerification is the tokens a verification pass committed on average, over
// every source.
func (s Stats) TokensPerVerification() float64 {
	return ratio(s.Accepted+s.Verifications, s.Verifications)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// PolicyOptions tune a Policy. The zero value takes every default.
type PolicyOptions struct {
	// MaxDraft is the longest draft (0: DefaultMaxDraft).
	MaxDraft int
	// RowCost is the prior cost of one more token in a verification pass, as a
	// fraction of a one-token pass (0: DefaultRowCost). The Policy refines it from the
	// passes it times.
	RowCost float64
	// MinGain is how much more a draft must be expected to commit per unit of time than
	// a plain pass for the Policy to draft (0: DefaultMinGain; -1 or less: draft
	// whenever a source has a draft, for tests and measurements).
	MinGain float64
	// Probe is how often (in passes without a draft) a source whose statistics say it
	// does not pay drafts anyway, one token, so that the statistics can recover (0:
	// DefaultProbe; negative: never). Each probe rejected outright doubles the interval
	// (up to 256 passes); an accepted one restores it.
	Probe int
}

// Defaults of PolicyOptions.
const (
	DefaultMaxDraft = 8
	DefaultRowCost  = 0.3
	DefaultMinGain  = 0.05
	DefaultProbe    = 16
)

// maxProbe is the longest probe interval: failed probes double the interval up to it.
const maxProbe = 256

// decay weighs the statistics of older passes: each pass multiplies the counts by it.
const decay = 0.9

// Prior acceptance counts of a source that has not drafted yet: an acceptance rate of
// 0.6, worth a few passes.
const priorAccepted, priorRejected = 1.5, 1.0

// Policy chooses, before each decoding pass, whether to draft, from which source and
// how many tokens. It models each source's drafts as accepted token by token with a
// probability α, which it estimates from the source's recent passes (accepted tokens
// over accepted tokens plus rejections, both decayed), so that a draft of k tokens
// commits (1-α^(k+1))/(1-α) tokens on average; and a verification pass of k drafted
// tokens as costing 1 + RowCost·k one-token passes, with RowCost refined from the passes'
// measured times. It drafts from the source and length with the best expected tokens
// per unit of time when that beats a plain pass by MinGain, and otherwise decodes
// plainly. A Policy serves one generation at a time (decode.Options.Speculate) and
// keeps its estimates from one generation to the next.
type Policy struct {
	opt     PolicyOptions
	sources []source
	idle    int // passes since the last draft
	// probeEvery is the current probe interval: Probe, doubled after every probe whose
	// draft was rejected outright (up to maxProbe), back to Probe after one accepted.
	probeEvery int
	probing    bool // the last draft was a probe

	plainNs float64 // decayed mean time of a one-token pass (0: none timed yet)
	rowCost float64

	stats Stats
}

// source is one drafter's running statistics.
type source struct {
	d                  Drafter
	accepted, rejected float64 // decayed counts
}

// NewPolicy returns a policy over the drafters that mode allows (in the given order;
// the order breaks ties).
func NewPolicy(mode Mode, drafters []Drafter, opt PolicyOptions) *Policy {
	if opt.MaxDraft <= 0 {
		opt.MaxDraft = DefaultMaxDraft
	}
	if opt.RowCost <= 0 {
		opt.RowCost = DefaultRowCost
	}
	if opt.MinGain == 0 {
		opt.MinGain = DefaultMinGain
	}
	if opt.Probe == 0 {
		opt.Probe = DefaultProbe
	}
	p := &Policy{opt: opt, rowCost: opt.RowCost}
	for _, d := range drafters {
		if d != nil && mode.Allows(d.Name()) {
			p.sources = append(p.sources, source{d: d, accepted: priorAccepted, rejected: priorRejected})
			p.stats.Sources = append(p.stats.Sources, SourceStats{Name: d.Name()})
		}
	}
	return p
}

// Active reports whether the policy has any draft source.
func (p *Policy) Active() bool { return len(p.sources) > 0 }

// Drafters returns the sources the policy drafts from.
func (p *Policy) Drafters() []Drafter {
	ds := make([]Drafter, len(p.sources))
	for i, s := range p.sources {
		ds[i] = s.d
	}
	return ds
}

// Reset starts a generation: the counts of Stats return to zero and every drafter is
// Reset with t and prompt (see Drafter.Reset). The acceptance and cost estimates carry
// over from earlier generations: they decay as new passes come.
func (p *Policy) Reset(t *Target, prompt []int32) {
	for i := range p.sources {
		s := &p.sources[i]
		s.d.Reset(t, prompt)
		p.stats.Sources[i] = SourceStats{Name: s.d.Name()}
	}
	p.idle = 0
	p.stats = Stats{Sources: p.stats.Sources}
}

// Stats returns the counts since the last Reset.
func (p *Policy) Stats() Stats {
	s := p.stats
	s.Sources = append([]SourceStats(nil), p.stats.Sources...)
	return s
}

// Draft asks the sources, best expected first, for a draft to follow seq (which ends
// with the pending token) of at most room tokens, and appends the first non-empty one
// to dst. It returns the extended slice and the index of the source that drafted, or
// dst unchanged and -1 for a plain pass.
func (p *Policy) Draft(dst, seq []int32, room int) ([]int32, int) {
	limit := min(room, p.opt.MaxDraft)
	if limit <= 0 || len(p.sources) == 0 {
		return dst, -1
	}
	type choice struct {
		src, k int
		value  float64
	}
	var order [8]choice
	cs := order[:0]
	for i := range p.sources {
		k, v := p.best(i, limit)
		cs = append(cs, choice{i, k, v})
	}
	// Best value first (a few sources: insertion sort).
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].value > cs[j-1].value; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	if p.probeEvery == 0 {
		p.probeEvery = p.opt.Probe
	}
	probe := p.opt.Probe > 0 && p.idle+1 >= p.probeEvery
	p.probing = false
	for _, c := range cs {
		d := p.sources[c.src].d
		conf, confident := d.(Confident)
		k := c.k
		switch {
		case confident:
			k = limit // as long as could pay: trimmed below by the draft's own confidence
		case c.value < 1+p.opt.MinGain:
			if !probe {
				continue
			}
			k = 1
			p.probing = true
		}
		n := len(dst)
		dst = d.Draft(dst, seq, k)
		if len(dst) > n+k {
			dst = dst[:n+k]
		}
		if len(dst) == n {
			continue
		}
		if confident {
			bk, v := p.value(c.src, conf.Confidence(), 0, len(dst)-n)
			if v < 1+p.opt.MinGain {
				if !probe {
					dst = dst[:n]
					continue
				}
				bk = 1
				p.probing = true
			}
			dst = dst[:n+bk]
		}
		p.idle = 0
		return dst, c.src
	}
	p.idle++
	return dst, -1
}

// Confident is a Drafter that knows how likely each token of its last draft is to be
// accepted (an n-gram drafter, from how drafts behind matches like it fared): the Policy
// then asks it for the longest draft that could pay and keeps the part worth verifying
// at those confidences, instead of using the source's overall acceptance.
type Confident interface {
	Drafter
	// Confidence returns, for each token of the last draft, the probability that it is
	// accepted given that the ones before it were. The slice is read-only and valid
	// until the next Draft.
	Confidence() []float64
}

// best returns source i's draft length up to limit with the most expected tokens per
// unit of time at the source's estimated acceptance, and that value relative to a plain
// pass (1 means equal).
func (p *Policy) best(i, limit int) (int, float64) {
	s := &p.sources[i]
	return p.value(i, nil, s.accepted/(s.accepted+s.rejected), limit)
}

// value returns the draft length up to limit from source i with the most expected
// tokens per unit of time when drafted token j is accepted (if the ones before it were)
// with probability conf[j], or alpha where conf has no entry, and that value relative
// to a plain pass.
func (p *Policy) value(i int, conf []float64, alpha float64, limit int) (int, float64) {
	coster, _ := p.sources[i].d.(Coster)
	bestK, bestV := 1, 0.0
	tokens, pow := 1.0, 1.0 // expected tokens committed: 1 + α₁ + α₁α₂ + ...
	for k := 1; k <= limit; k++ {
		if k <= len(conf) {
			alpha = conf[k-1]
		}
		pow *= alpha
		tokens += pow
		cost := 1 + p.rowCost*float64(k)
		if coster != nil {
			cost += coster.DraftCost(k)
		}
		if v := tokens / cost; v > bestV {
			bestK, bestV = k, v
		}
	}
	return bestK, bestV
}

// Coster is a Drafter whose drafts cost time of their own (an early-layer draft runs
// part of the model per token); the Policy counts it against the tokens it expects.
type Coster interface {
	Drafter
	// DraftCost is the time a draft of k tokens takes, in units of a one-token pass
	// of the full model.
	DraftCost(k int) float64
}

// Plain records a pass without a draft that took d.
func (p *Policy) Plain(d time.Duration) {
	p.stats.Passes++
	ns := float64(d.Nanoseconds())
	if ns <= 0 {
		return
	}
	if p.plainNs == 0 {
		p.plainNs = ns
	} else {
		p.plainNs = decay*p.plainNs + (1-decay)*ns
	}
}

// Verified records a verification pass of source src's draft of drafted tokens, of
// which the first accepted matched, that took d; it tells the drafter (Verified) if it
// wants to know.
func (p *Policy) Verified(src, drafted, accepted int, d time.Duration) {
	p.stats.Passes++
	p.stats.Verifications++
	p.stats.Drafted += drafted
	p.stats.Accepted += accepted
	ss := &p.stats.Sources[src]
	ss.Verifications++
	ss.Drafted += drafted
	ss.Accepted += accepted

	if p.probing && p.opt.Probe > 0 {
		if accepted == 0 {
			p.probeEvery = min(2*p.probeEvery, maxProbe)
		} else {
			p.probeEvery = p.opt.Probe
		}
	}
	s := &p.sources[src]
	s.accepted = decay*s.accepted + float64(accepted)
	s.rejected *= decay
	if accepted < drafted {
		s.rejected++
	}
	if v, ok := s.d.(Verified); ok {
		v.Verified(drafted, accepted)
	}
	if ns := float64(d.Nanoseconds()); p.plainNs > 0 && ns > 0 && drafted > 0 {
		// The marginal cost of a drafted row, from this pass against a plain one,
		// clamped to what a pass of k+1 rows can plausibly cost.
		obs := math.Min(math.Max((ns/p.plainNs-1)/float64(drafted), 0.01), 2)
		p.rowCost = decay*p.rowCost + (1-decay)*obs
	}
}

// RowCost is the current estimate of a drafted token's cost in a verification pass, as
// a fraction of a one-token pass.
func (p *Policy) RowCost() float64 { return p.rowCost }
