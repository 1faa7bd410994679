package earlyexit

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"squeeze/runtime/model"
	"squeeze/runtime/sample"
	"squeeze/runtime/speculate"
)

// ErrNotShared means a model's layers repeat no block, so the pipelined form does not
// apply (use a Drafter with speculate instead).
var ErrNotShared = errors.New("earlyexit: the model shares no blocks across depths")

// DefaultPipelineDraft is PipelineOptions.MaxDraft's default, and DefaultTrimmedDraft
// its default when the Drafter's drafts are trimmed by their tokens' confidences
// (speculate.Confident, with MinAccept set): only the part worth its rows goes in.
const (
	DefaultPipelineDraft = 2
	DefaultTrimmedDraft  = 8
)

// PipelineOptions tune a Pipeline. The zero value is the default.
type PipelineOptions struct {
	// NoRefine keeps a speculated token until its predecessor's full-depth result
	// rejects it. By default an exit of the predecessor that disagrees with the token
	// replaces it at once (and the tokens after it) when the token came from a
	// shallower exit or from the Drafter: the deeper exit is the better guess, and on
	// code an exit's disagreement refutes a drafted token more often than not (on
	// gocode-shared, steps then complete 2.4 tokens instead of 1.8); all are verified
	// the same way.
	NoRefine bool
	// Fast computes the batched rows with the batched kernels (model.Options without
	// Exact), which are faster but accumulate in another order than a one-token pass:
	// the tokens may then differ from plain greedy decoding's where two logits (nearly)
	// tie. The default is exact.
	Fast bool
	// Vocab, if set, restricts the early exits' guesses to these tokens and every token
	// the pipeline has seen (model.SubHead): the prompt and the fixed context, say. The
	// guesses then read a fraction of the LM head; a guess outside the vocabulary is
	// simply wrong. The full-depth results always use the whole head.
	Vocab []int32
	// Drafter, if set, extends each exit guess with up to MaxDraft more tokens (a
	// speculate.NGram: prompt lookup), which enter the pipeline together with it and are
	// verified together when they complete, so that one step can commit several tokens.
	// It sees the sequence Start received, extended by every token after it.
	Drafter speculate.Drafter
	// MaxDraft bounds the Drafter's drafts (0: DefaultPipelineDraft, or
	// DefaultTrimmedDraft for a speculate.Confident Drafter with MinAccept set).
	MaxDraft int
	// MinAccept, if positive, launches exit guesses, and the Drafter's tokens, only
	// while their recent acceptance rate (decayed over the last verifications) is at
	// least MinAccept: below it the pending token runs alone, as in plain decoding, so
	// that rows wasted on refuted guesses do not cost more than the steps the others
	// save. A guess (or a draft) still goes in every ProbeTokens tokens so that the
	// rate can recover. With a speculate.Confident Drafter, each drafted token goes in
	// only while its own chance of being confirmed pays for its rows, by the costs the
	// pipeline measures of its steps (MinAccept until it has timed enough of them).
	// 0 always speculates; DefaultMinAccept is what ask and serve use.
	MinAccept float64
}

// ProbeTokens is how often (in tokens) a Pipeline whose guesses or drafts fall below
// PipelineOptions.MinAccept launches one anyway.
const ProbeTokens = 8

// Prior acceptance counts of exit guesses and drafts (a rate of 0.6, worth a few
// verifications) and the decay of older verifications, as speculate's Policy weighs
// them.
const (
	priorAccepted, priorRejected = 1.5, 1.0
	acceptDecay                  = 0.9
)

// rate is a decayed acceptance rate.
type rate struct{ accepted, rejected float64 }

func (r *rate) add(ok bool) {
	r.accepted *= acceptDecay
	r.rejected *= acceptDecay
	if ok {
		r.accepted++
	} else {
		r.rejected++
	}
}

func (r *rate) value() float64 { return r.accepted / (r.accepted + r.rejected) }

// PipelineStats count what a Pipeline did.
type PipelineStats struct {
	// Steps is the number of batched steps (each reads one block period of weights and
	// the LM head once); Rows the token rows they ran, summed; Depths the depths they ran
	// rows at, summed (a step's rows at one depth share that depth's layers of the KV
	// cache, so each further depth reads another copy of the keys and values).
	Steps, Rows, Depths int
	// Tokens is the number of tokens Next returned.
	Tokens int
	// Launched counts tokens guessed by early exits and started; Accepted those that
	// greedy decoding confirmed. Drafted and DraftAccepted count the Drafter's tokens
	// likewise. Flushed counts the speculated tokens dropped, refuted or replaced by a
	// deeper exit's guess.
	Launched, Accepted, Drafted, DraftAccepted, Flushed int
}

// Speculation returns the pipeline's counts as a draft-then-verify policy reports them
// (speculate.Stats): every step a pass and a verification, the exits' guesses and the
// Drafter's tokens drafted, those confirmed accepted.
func (s PipelineStats) Speculation() speculate.Stats {
	return speculate.Stats{Passes: s.Steps, Verifications: s.Steps,
		Drafted: s.Launched + s.Drafted, Accepted: s.Accepted + s.DraftAccepted}
}

// DefaultMinAccept is the PipelineOptions.MinAccept of ask and serve: on gocode-shared,
// prompts whose guesses were accepted less than half the time decoded slower than
// plain decoding when the pipeline kept launching them.
const DefaultMinAccept = 0.5

// Pipeline decodes greedily on a parameter-shared model (layer i uses the weights of
// layer i mod G, G = model.BlockPeriod() < Layers) with SPEED's pipeline: the exits at
// the ends of the first cycles through the G blocks (layers G, 2G, ...: the final norm
// and LM head applied to the hidden state there) guess the next token, which starts its
// first cycle while its predecessor runs the next one. Every step advances each token in
// flight by one cycle in one batched pass (model.ForwardLayers), so one read of the G
// blocks' weights serves every token in flight. When the oldest token completes the full
// depth, its argmax is the next greedy token: a matching guess in flight becomes real, a
// wrong one is flushed with every younger token and the right token starts over. With a
// Drafter, an exit's guess enters together with the tokens drafted after it, and tokens
// that complete together are verified together, as in draft-then-verify decoding. The
// rows are computed as plain decoding computes them (model.Options.Exact), and the
// completed rows' tokens are the argmax of the logits a one-token pass computes
// (model.GreedyHead, which reads an 8-bit copy of the LM head and the exact logits of
// the few tokens it cannot rule out, or HeadExact), so the tokens are exactly plain
// greedy decoding's (unless PipelineOptions.Fast trades that for speed).
//
// A Pipeline serves one generation at a time on its Target's cache.
type Pipeline struct {
	t        speculate.Target
	period   int
	layers   int
	dim      int
	vocab    int
	refine   bool
	exact    bool
	maxDraft int
	drafter  speculate.Drafter
	opt      model.Options

	flights []flight
	seq     []int32 // the sequence: Start's, then every token Next returned
	out     []int32 // tokens computed and not yet returned by Next
	stages  []model.Stage
	xs, hx  []float32
	final   []float32 // the completed rows' logits (without a GreedyHead)
	greedy  *model.GreedyHead
	doneTok []int32   // the completed rows' greedy tokens
	logits  []float32 // the exit rows' logits
	exitRow []int     // per row of the step: its row in logits, or -1
	draft   []int32
	scratch []int32
	sub     *model.SubHead
	stats   PipelineStats

	// MinAccept's state: the acceptance of exit guesses and of drafts, and the tokens
	// since each last went in.
	minAccept            float64
	guesses, drafts      rate
	sinceGuess, sinceDft int
	costs                stepCosts
}

// Where a token in flight came from.
const (
	srcKnown = iota // greedy decoding's token
	srcExit         // an early exit's guess
	srcDraft        // the Drafter's
)

// flight is a token in the pipeline.
type flight struct {
	tok  int32
	pos  int
	done int // layers run
	src  int
	// depth is, for srcExit, the depth of the exit that guessed the token.
	depth int
	row   int // the token's row in the current step, -1 if it did not run
	x     []float32
	// For srcDraft: the draft's ticket (speculate.Settler), its number of tokens that
	// went in, and this token's index in it.
	ticket            speculate.Ticket
	draftLen, draftAt int
}

// NewPipeline returns a Pipeline on t, or an error wrapping ErrNotShared when t's model
// repeats no block.
func NewPipeline(t speculate.Target, o PipelineOptions) (*Pipeline, error) {
	if t.Model == nil || t.Cache == nil || t.Pool == nil {
		return nil, errors.New("earlyexit: a pipeline needs a model, a cache and a pool")
	}
	cfg := &t.Model.Config
	period := t.Model.BlockPeriod()
	if period >= cfg.Layers {
		return nil, fmt.Errorf("%w: %d distinct layers", ErrNotShared, cfg.Layers)
	}
	pl := &Pipeline{
		t: t, period: period, layers: cfg.Layers, dim: cfg.Dim, vocab: cfg.Vocab,
		refine: !o.NoRefine, exact: !o.Fast, drafter: o.Drafter, maxDraft: o.MaxDraft,
		opt:       model.Options{Prefix: t.Prefix, Exact: !o.Fast},
		minAccept: o.MinAccept,
		guesses:   rate{priorAccepted, priorRejected}, drafts: rate{priorAccepted, priorRejected},
	}
	if o.Drafter == nil {
		pl.maxDraft = 0
	} else if pl.maxDraft <= 0 {
		pl.maxDraft = DefaultPipelineDraft
		if _, ok := o.Drafter.(speculate.Confident); ok && o.MinAccept > 0 {
			pl.maxDraft = DefaultTrimmedDraft
		}
	}
	if o.Vocab != nil {
		pl.sub = t.Model.SubHead(o.Vocab)
	}
	if pl.exact {
		pl.greedy = t.Model.GreedyHead()
	}
	return pl, nil
}

// Period returns G, the number of distinct blocks, which is the depth of each step.
func (pl *Pipeline) Period() int { return pl.period }

// Stats returns the counts since NewPipeline.
func (pl *Pipeline) Stats() PipelineStats { return pl.stats }

// Start begins generating after seq, the sequence after the fixed context (the prompt
// and what was generated), whose last token greedy decoding chose and has not run yet:
// the cache holds every token before it, so it takes position Cache.Len(). Tokens in
// flight from an earlier Start are dropped, and the Drafter is Reset.
func (pl *Pipeline) Start(seq []int32) error {
	if len(seq) == 0 {
		return errors.New("earlyexit: Start needs the pending token")
	}
	pl.flights, pl.out = pl.flights[:0], pl.out[:0]
	pl.seq = append(pl.seq[:0], seq...)
	if pl.sub != nil {
		pl.sub.Add(seq...)
	}
	if pl.drafter != nil {
		pl.drafter.Reset(&pl.t, seq)
	}
	pos := pl.t.Cache.Len()
	if pos >= pl.t.Cache.Cap() {
		return fmt.Errorf("%w: no position left for the pending token", model.ErrContextFull)
	}
	return pl.launchTail(seq[len(seq)-1], pos, srcKnown, 0)
}

// Next returns the greedy token that follows the last one, running steps until the
// oldest token in flight completes the full depth. Afterwards the cache's Len() counts
// every token up to the one returned, or more when a step completed several tokens whose
// successors Next has yet to return. Once the cache has no position left for the
// pending token, Next fails with model.ErrContextFull.
func (pl *Pipeline) Next() (int32, error) {
	for len(pl.out) == 0 {
		if len(pl.flights) == 0 {
			if pl.t.Cache.Len() >= pl.t.Cache.Cap() {
				return 0, fmt.Errorf("%w: no position left for the pending token", model.ErrContextFull)
			}
			return 0, errors.New("earlyexit: Next without a pending token (call Start)")
		}
		if err := pl.step(); err != nil {
			return 0, err
		}
	}
	tok := pl.out[0]
	pl.out = pl.out[:copy(pl.out, pl.out[1:])]
	pl.stats.Tokens++
	return tok, nil
}

// launch puts tok at pos into the pipeline, before its first layer.
func (pl *Pipeline) launch(tok int32, pos, src, depth int) error {
	i := len(pl.flights)
	if i < cap(pl.flights) {
		pl.flights = pl.flights[:i+1]
	} else {
		pl.flights = append(pl.flights, flight{})
	}
	f := &pl.flights[i]
	if len(f.x) != pl.dim {
		f.x = make([]float32, pl.dim)
	}
	f.tok, f.pos, f.done, f.src, f.depth, f.row = tok, pos, 0, src, depth, -1
	switch src {
	case srcExit:
		pl.stats.Launched++
	case srcDraft:
		pl.stats.Drafted++
	}
	return pl.t.Model.Embed(f.x, []int32{tok})
}

// launchGuess launches an exit's guess at pos and the Drafter's tokens after it.
func (pl *Pipeline) launchGuess(tok int32, pos, depth int) error {
	return pl.launchTail(tok, pos, srcExit, depth)
}

// launchTail launches tok at pos behind every flight (an exit's guess, or greedy
// decoding's token when the pipeline starts or restarts after a refuted guess) and the
// Drafter's tokens after it, so that a restart's first steps, which would run one row,
// carry the draft's rows as well.
func (pl *Pipeline) launchTail(tok int32, pos, src, depth int) error {
	if pos >= pl.t.Cache.Cap() {
		return nil
	}
	if err := pl.launch(tok, pos, src, depth); err != nil {
		return err
	}
	room := min(pl.maxDraft, pl.t.Cache.Cap()-pos-1)
	if room <= 0 || !pl.allowed(&pl.drafts, pl.sinceDft) {
		return nil
	}
	pl.sinceDft = 0
	// The Drafter sees the known sequence and the tokens speculated after it.
	s := append(pl.scratch[:0], pl.seq...)
	for _, f := range pl.flights {
		if f.src != srcKnown {
			s = append(s, f.tok)
		}
	}
	pl.scratch = s
	pl.draft = pl.drafter.Draft(pl.draft[:0], s, room)
	pl.draft = pl.draft[:pl.worthLaunching(len(pl.draft), src == srcExit)]
	var ticket speculate.Ticket
	if st, ok := pl.drafter.(speculate.Settler); ok {
		ticket = st.Ticket()
	}
	for i, d := range pl.draft {
		if err := pl.launch(d, pos+1+i, srcDraft, 0); err != nil {
			return err
		}
		f := &pl.flights[len(pl.flights)-1]
		f.ticket, f.draftLen, f.draftAt = ticket, len(pl.draft), i
	}
	return nil
}

// settle tells the Drafter (if a speculate.Settler) how the draft of f, a drafted
// token just verified, fared: f is the first rejected token unless ok, and the draft's
// last accepted one if ok and last.
func (pl *Pipeline) settle(f *flight, ok bool) {
	st, isSettler := pl.drafter.(speculate.Settler)
	switch {
	case !isSettler:
	case !ok:
		st.Settle(f.ticket, f.draftLen, f.draftAt)
	case f.draftAt == f.draftLen-1:
		st.Settle(f.ticket, f.draftLen, f.draftLen)
	}
}

// worthLaunching returns how many of the n tokens the Drafter just drafted go in: all
// of them, unless the Drafter estimates each token's chance (speculate.Confident) and
// MinAccept is set. Then a token goes in while the chance that every drafted token up
// to it, and the exit guess before them if afterGuess, are all confirmed (the product
// of the confidences, times the guesses' recent rate) pays for its rows: a drafted token costs its
// row's share of every step it stays in flight (up to Layers/G steps) and, if
// confirmed, saves the time of a token. Both come from the recent steps' times
// (stepCosts); until enough are timed, the chance must reach MinAccept.
func (pl *Pipeline) worthLaunching(n int, afterGuess bool) int {
	conf, ok := pl.drafter.(speculate.Confident)
	if !ok || pl.minAccept <= 0 {
		return n
	}
	cs := conf.Confidence()
	chance := 1.0
	if afterGuess {
		chance = pl.guesses.value()
	}
	floor := pl.costs.breakEven(pl.layers/pl.period, pl.minAccept)
	for i := range min(n, len(cs)) {
		if chance *= cs[i]; chance < floor {
			return i
		}
	}
	return n
}

// drop flushes the flights from i on. A draft cut short keeps its first tokens, whose
// last then settles the draft when it is confirmed.
func (pl *Pipeline) drop(i int) {
	if i > 0 && i < len(pl.flights) {
		if f := &pl.flights[i-1]; f.src == srcDraft {
			f.draftLen = f.draftAt + 1
		}
	}
	pl.stats.Flushed += len(pl.flights) - i
	pl.flights = pl.flights[:i]
}

// step advances every flight by one cycle and handles the results: completed tokens are
// verified (their greedy successors go to pl.out), exits launch and refine guesses. It
// times the step for the cost model of the drafted tokens (worthLaunching).
func (pl *Pipeline) step() error {
	rows, out := len(pl.flights), len(pl.out)
	t0 := time.Now()
	err := pl.advance()
	pl.costs.add(rows, len(pl.out)-out, time.Since(t0))
	return err
}

// advance is step's work.
func (pl *Pipeline) advance() error {
	m, dim := pl.t.Model, pl.dim
	n := len(pl.flights)
	if len(pl.xs) < n*dim {
		pl.xs, pl.hx = make([]float32, n*dim), make([]float32, n*dim)
		pl.exitRow = make([]int, n)
	}
	pl.stages = pl.stages[:0]
	for i := range pl.flights {
		f := &pl.flights[i]
		f.row = i
		if k := len(pl.stages); k > 0 && pl.stages[k-1].Layer == f.done {
			pl.stages[k-1].Rows++
		} else {
			pl.stages = append(pl.stages, model.Stage{Layer: f.done, Pos: f.pos, Rows: 1})
		}
		copy(pl.xs[i*dim:(i+1)*dim], f.x)
	}
	if err := m.ForwardLayers(pl.t.Pool, pl.t.Cache, pl.xs[:n*dim], pl.stages, pl.period, &pl.opt); err != nil {
		return err
	}
	done := 0 // flights that completed the full depth: the first ones
	for i := range pl.flights {
		f := &pl.flights[i]
		copy(f.x, pl.xs[i*dim:(i+1)*dim])
		f.done += pl.period
		if f.done == pl.layers {
			done++
		}
	}
	pl.logitsOf(done)
	pl.stats.Steps++
	pl.stats.Rows += n
	pl.stats.Depths += len(pl.stages)

	// Verify the completed flights in order.
	kept := 0
	for i := range done {
		pos := pl.flights[i].pos
		g := pl.doneTok[i]
		if g < 0 {
			return fmt.Errorf("earlyexit: the token after position %d: %w", pos, sample.ErrNoCandidates)
		}
		pl.out = append(pl.out, g)
		pl.seq = append(pl.seq, g)
		if pl.sub != nil {
			pl.sub.Add(g)
		}
		if err := pl.t.Cache.SetLen(pos + 1); err != nil {
			return err
		}
		kept = i + 1
		pl.sinceGuess++
		pl.sinceDft++
		if i+1 < len(pl.flights) {
			next := &pl.flights[i+1]
			switch next.src {
			case srcDraft:
				pl.drafts.add(next.tok == g)
				pl.settle(next, next.tok == g)
			case srcExit:
				pl.guesses.add(next.tok == g)
			}
			if next.tok == g {
				if next.src == srcDraft {
					pl.stats.DraftAccepted++
				} else {
					pl.stats.Accepted++
				}
				next.src = srcKnown
				continue
			}
		}
		pl.drop(i + 1)
		pl.removeFront(kept)
		if pos+1 < pl.t.Cache.Cap() {
			return pl.launchTail(g, pos+1, srcKnown, 0)
		}
		return nil
	}
	pl.removeFront(kept)

	// Exits: refine speculated successors, and launch after the youngest.
	for i := 0; i < len(pl.flights); i++ {
		f := pl.flights[i]
		if f.row < 0 || pl.exitRow[f.row] < 0 {
			continue
		}
		guess := pl.guess(pl.exitRow[f.row])
		if i+1 < len(pl.flights) {
			if next := pl.flights[i+1]; next.tok != guess {
				pl.drop(i + 1)
				return pl.launchGuess(guess, f.pos+1, f.done)
			}
			continue
		}
		if !pl.guessing() {
			return nil
		}
		pl.sinceGuess = 0
		return pl.launchGuess(guess, f.pos+1, f.done)
	}
	return nil
}

// allowed reports whether speculation whose acceptance is r may go in, n tokens after
// it last did (PipelineOptions.MinAccept).
func (pl *Pipeline) allowed(r *rate, n int) bool {
	return pl.minAccept <= 0 || r.value() >= pl.minAccept || n >= ProbeTokens
}

// guessing reports whether the youngest flight's exit may launch a guess.
func (pl *Pipeline) guessing() bool { return pl.allowed(&pl.guesses, pl.sinceGuess) }

// removeFront drops the first k flights (completed), keeping their buffers for reuse.
func (pl *Pipeline) removeFront(k int) {
	if k == 0 {
		return
	}
	// Rotate left by k (three reversals), so the removed flights' buffers follow the
	// kept ones.
	f := pl.flights
	slices.Reverse(f[:k])
	slices.Reverse(f[k:])
	slices.Reverse(f)
	pl.flights = f[:len(f)-k]
}

// logitsOf computes what the step needs of the LM head: the greedy tokens of the done
// rows that completed the full depth (the first ones), the argmax of the logits a
// one-token pass computes (GreedyHead, or HeadExact where the model has none), and the
// exit guesses' logits (batched, from the vocabulary if there is one) for the youngest
// flight and for flights whose successor a deeper exit may refine.
func (pl *Pipeline) logitsOf(done int) {
	m, dim := pl.t.Model, pl.dim
	if done > 0 {
		if len(pl.doneTok) < done {
			pl.doneTok = make([]int32, done)
		}
		copy(pl.hx[:done*dim], pl.xs[:done*dim])
		if pl.greedy != nil {
			pl.greedy.Argmax(pl.t.Pool, pl.hx[:done*dim], done, pl.doneTok[:done])
		} else {
			if len(pl.final) < done*pl.vocab {
				pl.final = make([]float32, done*pl.vocab)
			}
			if pl.exact {
				m.HeadExact(pl.t.Pool, pl.hx[:done*dim], done, pl.final[:done*pl.vocab])
			} else {
				m.Head(pl.t.Pool, pl.hx[:done*dim], done, pl.final[:done*pl.vocab])
			}
			for i := range done {
				row := pl.final[i*pl.vocab : (i+1)*pl.vocab]
				t := argmax(row)
				if !(row[t] > float32(math.Inf(-1))) {
					t = -1 // no finite logit, as GreedyHead reports it
				}
				pl.doneTok[i] = t
			}
		}
	}
	k := 0
	for i := range pl.flights {
		f := &pl.flights[i]
		pl.exitRow[i] = -1
		if f.done >= pl.layers {
			continue
		}
		last := i == len(pl.flights)-1
		youngest := last && pl.guessing() // its exit guesses the next token
		refinable := !last && pl.refine && pl.refines(f, &pl.flights[i+1])
		if youngest || refinable {
			copy(pl.hx[k*dim:(k+1)*dim], pl.xs[i*dim:(i+1)*dim])
			pl.exitRow[i] = k
			k++
		}
	}
	if k == 0 {
		return
	}
	width := pl.vocab
	if pl.sub != nil {
		width = len(pl.sub.IDs())
	}
	if len(pl.logits) < k*width {
		pl.logits = make([]float32, k*width)
	}
	if pl.sub != nil {
		pl.sub.Logits(pl.t.Pool, pl.hx[:k*dim], k, pl.logits[:k*width])
	} else {
		m.Head(pl.t.Pool, pl.hx[:k*dim], k, pl.logits[:k*width])
	}
}

// refines reports whether f's exit, at the depth f has reached, may replace its
// speculated successor next: a guess from a shallower exit, or a drafted token (which
// no exit vouched for).
func (pl *Pipeline) refines(f, next *flight) bool {
	return next.src != srcKnown && f.done > next.depth
}

// guess returns the token of exit logits row r.
func (pl *Pipeline) guess(r int) int32 {
	if pl.sub != nil {
		w := len(pl.sub.IDs())
		return pl.sub.IDs()[argmax(pl.logits[r*w:(r+1)*w])]
	}
	return argmax(pl.logits[r*pl.vocab : (r+1)*pl.vocab])
}

// argmax returns the index of the first largest value of x.
func argmax(x []float32) int32 {
	best, bestV := int32(0), float32(math.Inf(-1))
	for i, v := range x {
		if v > bestV {
			best, bestV = int32(i), v
		}
	}
	return best
}
