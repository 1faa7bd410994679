package earlyexit

import (
	"errors"
	"fmt"
	"math"

	"squeeze/runtime/model"
	"squeeze/runtime/speculate"
)

// ErrNotShared means a model's layers repeat no block, so the pipelined form does not
// apply (use a Drafter with speculate instead).
var ErrNotShared = errors.New("earlyexit: the model shares no blocks across depths")

// PipelineOptions tune a Pipeline. The zero value is the default.
type PipelineOptions struct {
	// NoRefine keeps a speculated token until its predecessor's full-depth result
	// rejects it. By default a deeper exit of the predecessor that disagrees with the
	// shallower exit the token came from replaces it at once (the deeper exit is the
	// better guess; both are verified the same way).
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
}

// PipelineStats count what a Pipeline did.
type PipelineStats struct {
	// Steps is the number of batched steps (each reads one block period of weights and
	// the LM head once); Rows the token rows they ran, summed.
	Steps, Rows int
	// Tokens is the number of tokens Next returned.
	Tokens int
	// Launched counts speculated tokens started; Accepted those that greedy decoding
	// confirmed; Flushed those dropped, refuted or replaced by a deeper exit's guess.
	Launched, Accepted, Flushed int
}

// Pipeline decodes greedily on a parameter-shared model (layer i uses the weights of
// layer i mod G, G = model.BlockPeriod() < Layers) with SPEED's pipeline: the exits at
// the ends of the first cycles through the G blocks (layers G, 2G, ...: the final norm
// and LM head applied to the hidden state there) guess the next token, which starts its
// first cycle while its predecessor runs the next one. Every step advances each token in
// flight by one cycle in one batched pass (model.ForwardLayers), so one read of the G
// blocks' weights serves up to Layers/G tokens. When the oldest token completes the
// full depth, its argmax is the next greedy token: a matching guess in flight becomes
// real, a wrong one is flushed with every younger token and the right token starts
// over. The rows are computed as plain decoding computes them (model.Options.Exact and
// HeadExact), so the tokens are exactly plain greedy decoding's (unless
// PipelineOptions.Fast trades that for speed).
//
// A Pipeline serves one generation at a time on its Target's cache.
type Pipeline struct {
	t      speculate.Target
	period int
	layers int
	dim    int
	vocab  int
	refine bool
	exact  bool
	opt    model.Options

	flights []flight
	stages  []model.Stage
	xs, hx  []float32
	final   []float32 // the completed row's logits
	logits  []float32 // the exit rows' logits
	skip    int       // 1 when the step's first row completed: its logits are in final
	sub     *model.SubHead
	stats   PipelineStats
}

// flight is a token in the pipeline.
type flight struct {
	tok  int32
	pos  int
	done int // layers run
	// guess is the depth of the exit that guessed the token, or Layers for a token
	// known to be greedy decoding's.
	guess int
	row   int // the token's row in the current step, -1 if it did not run
	x     []float32
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
	cycles := cfg.Layers / period
	pl := &Pipeline{
		t: t, period: period, layers: cfg.Layers, dim: cfg.Dim, vocab: cfg.Vocab,
		refine: !o.NoRefine,
		exact:  !o.Fast,
		opt:    model.Options{Prefix: t.Prefix, Exact: !o.Fast},
		stages: make([]model.Stage, 0, cycles),
		xs:     make([]float32, cycles*cfg.Dim),
		hx:     make([]float32, cycles*cfg.Dim),
		final:  make([]float32, cfg.Vocab),
		logits: make([]float32, cycles*cfg.Vocab),
	}
	if o.Vocab != nil {
		pl.sub = t.Model.SubHead(o.Vocab)
	}
	for range cycles {
		pl.flights = append(pl.flights, flight{x: make([]float32, cfg.Dim)})
	}
	pl.flights = pl.flights[:0]
	return pl, nil
}

// Period returns G, the number of distinct blocks, which is the depth of each step.
func (pl *Pipeline) Period() int { return pl.period }

// Stats returns the counts since NewPipeline.
func (pl *Pipeline) Stats() PipelineStats { return pl.stats }

// Start begins generating after pending, a token greedy decoding chose that has not run
// yet: the cache holds every token before it, so it takes position Cache.Len(). Tokens
// in flight from an earlier Start are dropped.
func (pl *Pipeline) Start(pending int32) error {
	pl.flights = pl.flights[:0]
	pos := pl.t.Cache.Len()
	if pos >= pl.t.Cache.Cap() {
		return fmt.Errorf("%w: no position left for the pending token", model.ErrContextFull)
	}
	return pl.launch(pending, pos, pl.layers)
}

// Next runs steps until the oldest token in flight completes the full depth and returns
// the greedy token that follows it. Afterwards the cache's Len() counts every token up to
// the one whose result was returned, and the returned token is the pending one (in flight
// or started anew). Once the cache has no position left for the pending token, Next fails
// with model.ErrContextFull.
func (pl *Pipeline) Next() (int32, error) {
	for {
		if len(pl.flights) == 0 {
			if pl.t.Cache.Len() >= pl.t.Cache.Cap() {
				return 0, fmt.Errorf("%w: no position left for the pending token", model.ErrContextFull)
			}
			return 0, errors.New("earlyexit: Next without a pending token (call Start)")
		}
		tok, ok, err := pl.step()
		if err != nil || ok {
			return tok, err
		}
	}
}

// launch puts tok at pos into the pipeline, before its first layer.
func (pl *Pipeline) launch(tok int32, pos, guess int) error {
	i := len(pl.flights)
	pl.flights = pl.flights[:i+1]
	f := &pl.flights[i]
	f.tok, f.pos, f.done, f.guess, f.row = tok, pos, 0, guess, -1
	if pl.sub != nil && guess == pl.layers {
		pl.sub.Add(tok)
	}
	return pl.t.Model.Embed(f.x, []int32{tok})
}

// drop flushes the flights from i on.
func (pl *Pipeline) drop(i int) {
	pl.stats.Flushed += len(pl.flights) - i
	pl.flights = pl.flights[:i]
}

// step advances every flight by one cycle and handles the results: it returns the
// greedy token after the oldest flight when that one completed.
func (pl *Pipeline) step() (int32, bool, error) {
	m, dim := pl.t.Model, pl.dim
	n := len(pl.flights)
	pl.stages = pl.stages[:0]
	for i := range pl.flights {
		f := &pl.flights[i]
		f.row = i
		pl.stages = append(pl.stages, model.Stage{Layer: f.done, Pos: f.pos, Rows: 1})
		copy(pl.xs[i*dim:(i+1)*dim], f.x)
	}
	if err := m.ForwardLayers(pl.t.Pool, pl.t.Cache, pl.xs[:n*dim], pl.stages, pl.period, &pl.opt); err != nil {
		return 0, false, err
	}
	for i := range pl.flights {
		f := &pl.flights[i]
		copy(f.x, pl.xs[i*dim:(i+1)*dim])
		f.done += pl.period
	}
	pl.logitsOf(n)
	pl.stats.Steps++
	pl.stats.Rows += n

	var out int32
	emitted := false
	if old := pl.flights[0]; old.done == pl.layers {
		out, emitted = argmax(pl.final), true
		pl.stats.Tokens++
		if err := pl.t.Cache.SetLen(old.pos + 1); err != nil {
			return 0, false, err
		}
		// Shift the flights down, keeping their buffers.
		x0 := pl.flights[0].x
		copy(pl.flights, pl.flights[1:])
		pl.flights[n-1].x = x0
		pl.flights = pl.flights[:n-1]
		if len(pl.flights) > 0 && pl.flights[0].tok == out {
			pl.stats.Accepted++
			pl.flights[0].guess = pl.layers
		} else {
			pl.drop(0)
			if old.pos+1 >= pl.t.Cache.Cap() {
				return out, true, nil
			}
			if err := pl.launch(out, old.pos+1, pl.layers); err != nil {
				return 0, false, err
			}
		}
	}
	// Each flight that ran and is not complete has an exit guess for the next position.
	for i := 0; i < len(pl.flights); i++ {
		f := pl.flights[i]
		if f.row < 0 || f.done >= pl.layers {
			continue
		}
		guess := pl.guess(f.row)
		if i+1 < len(pl.flights) {
			next := pl.flights[i+1]
			if pl.refine && f.done > next.guess && next.tok != guess {
				pl.drop(i + 1)
				if err := pl.launch(guess, f.pos+1, f.done); err != nil {
					return 0, false, err
				}
				pl.stats.Launched++
			}
			continue
		}
		if f.pos+1 < pl.t.Cache.Cap() {
			if err := pl.launch(guess, f.pos+1, f.done); err != nil {
				return 0, false, err
			}
			pl.stats.Launched++
		}
		break
	}
	return out, emitted, nil
}

// logitsOf computes the logits the n rows of the step need: the whole head's, as a
// one-token pass computes them, for a row that completed the full depth (always the
// first), and the exit guesses' (batched, from the vocabulary if there is one) for the
// others.
func (pl *Pipeline) logitsOf(n int) {
	m, dim := pl.t.Model, pl.dim
	first := 0
	pl.skip = 0
	if pl.flights[0].done == pl.layers {
		first, pl.skip = 1, 1
		copy(pl.hx[:dim], pl.xs[:dim])
		if pl.exact {
			m.HeadExact(pl.t.Pool, pl.hx[:dim], 1, pl.final)
		} else {
			m.Head(pl.t.Pool, pl.hx[:dim], 1, pl.final)
		}
	}
	k := n - first
	if k == 0 {
		return
	}
	copy(pl.hx[:k*dim], pl.xs[first*dim:n*dim])
	if pl.sub != nil {
		pl.sub.Logits(pl.t.Pool, pl.hx[:k*dim], k, pl.logits[:k*len(pl.sub.IDs())])
	} else {
		m.Head(pl.t.Pool, pl.hx[:k*dim], k, pl.logits[:k*pl.vocab])
	}
}

// guess returns the exit guess of row r (not the completed one) of the step.
func (pl *Pipeline) guess(r int) int32 {
	r -= pl.skip
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
