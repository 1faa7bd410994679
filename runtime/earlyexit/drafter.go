package earlyexit

import (
	"math"

	"squeeze/runtime/model"
	"squeeze/runtime/speculate"
)

// DrafterName is the name a Drafter gives itself in statistics and on the command line.
const DrafterName = "early"

// Drafter drafts tokens from an early layer (speculate.Drafter): the pending token runs
// the first E = Predictor.Layer layers only (model.ForwardLayers, which leaves
// Cache.Len() alone), the Predictor maps its hidden state to a predicted final one, and
// the final norm and LM head give the drafted token, which runs the first E layers in
// turn to draft the next. The draft stops at max tokens, at the end of the cache, or
// when a drafted token's probability falls below MinProb.
type Drafter struct {
	pred *Predictor
	// MinProb ends a draft after a token whose softmax probability under the early
	// prediction is below it (0 drafts to the length asked).
	MinProb float32
	// Vocab, if set before Reset, restricts the drafts to these tokens and every token
	// of the sequence (model.SubHead): the fixed context's tokens, say. A draft then
	// reads a fraction of the LM head; a token outside the vocabulary is never drafted.
	Vocab []int32

	t      speculate.Target
	opt    model.Options
	x, h   []float32
	tmp    []float32 // the predictor's scratch
	logits []float32
	sub    *model.SubHead
	seen   int // tokens of the sequence added to sub
}

// NewDrafter returns a Drafter with the predictor p (which must have passed Check; it
// may be shared with other Drafters).
func NewDrafter(p *Predictor) *Drafter {
	return &Drafter{pred: p, x: make([]float32, p.Dim), h: make([]float32, p.Dim), tmp: make([]float32, p.Rank)}
}

// Name returns DrafterName.
func (d *Drafter) Name() string { return DrafterName }

// Predictor returns the drafter's predictor.
func (d *Drafter) Predictor() *Predictor { return d.pred }

// Reset starts a generation on t.
func (d *Drafter) Reset(t *speculate.Target, prompt []int32) {
	d.t = *t
	d.opt = model.Options{Prefix: t.Prefix}
	if len(d.logits) != t.Model.Config.Vocab {
		d.logits = make([]float32, t.Model.Config.Vocab)
	}
	d.sub, d.seen = nil, 0
	if d.Vocab != nil {
		d.sub = t.Model.SubHead(d.Vocab)
	}
}

// Draft appends up to max tokens predicted to follow seq, whose last token is pending at
// position Cache.Len(). It fills the first E layers of the cache at the positions of the
// pending token and the draft (the verification pass overwrites them) and leaves
// Cache.Len() unchanged. It drafts nothing if the model's layers are not deeper than E or
// a pass fails.
func (d *Drafter) Draft(dst []int32, seq []int32, max int) []int32 {
	t, p := &d.t, d.pred
	if len(seq) == 0 || t.Model == nil || p.Layer >= t.Model.Config.Layers {
		return dst
	}
	if d.sub != nil && len(seq) > d.seen {
		d.sub.Add(seq[d.seen:]...)
		d.seen = len(seq)
	}
	tok := seq[len(seq)-1]
	pos := t.Cache.Len()
	for i := 0; i < max && pos+i+1 < t.Cache.Cap(); i++ {
		if err := t.Model.Embed(d.x, []int32{tok}); err != nil {
			return dst
		}
		stage := []model.Stage{{Layer: 0, Pos: pos + i, Rows: 1}}
		if err := t.Model.ForwardLayers(t.Pool, t.Cache, d.x, stage, p.Layer, &d.opt); err != nil {
			return dst
		}
		p.Apply(t.Pool, d.h, d.x, d.tmp)
		logits := d.logits
		if d.sub != nil {
			logits = logits[:len(d.sub.IDs())]
			d.sub.Logits(t.Pool, d.h, 1, logits)
		} else {
			t.Model.Head(t.Pool, d.h, 1, logits)
		}
		best := argmax(logits)
		tok = best
		if d.sub != nil {
			tok = d.sub.IDs()[best]
		}
		dst = append(dst, tok)
		if d.MinProb > 0 && prob(logits, best) < d.MinProb {
			break
		}
	}
	return dst
}

// prob returns the softmax probability of entry i of logits.
func prob(logits []float32, i int32) float32 {
	top := logits[i]
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l - top))
	}
	return float32(1 / sum)
}

var _ speculate.Drafter = (*Drafter)(nil)

// headCost is the LM head's weight count in units of one layer's, for the cost model.
func headCost(cfg *model.Config) float64 {
	layer := float64(cfg.Dim)*float64(2*cfg.QDim()+2*cfg.KVDim()) + 3*float64(cfg.Dim)*float64(cfg.FFN)
	return float64(cfg.Vocab) * float64(cfg.Dim) / layer
}

// Speedup is the cost model for early drafts from layer e with per-token acceptance
// alpha, on a model of cfg's shape whose decoding is bound by reading weights: a round
// drafts k tokens (each runs e layers and the LM head) and verifies the pending token
// and the draft in one full-depth pass, which costs about as much as decoding one token;
// it commits (1-alpha^(k+1))/(1-alpha) tokens on average. Speedup returns the best
// ratio of tokens per cost, against plain decoding's one token per pass, over k = 1..8,
// and that k; when no draft pays it returns 1 and 0.
func Speedup(cfg *model.Config, e int, alpha float64) (float64, int) {
	h := headCost(cfg)
	full := float64(cfg.Layers) + h
	best, bestK := 1.0, 0
	for k := 1; k <= 8; k++ {
		tokens := float64(k + 1)
		if alpha < 1 {
			tokens = (1 - math.Pow(alpha, float64(k+1))) / (1 - alpha)
		}
		cost := 1 + float64(k)*(float64(e)+h)/full
		if s := tokens / cost; s > best {
			best, bestK = s, k
		}
	}
	return best, bestK
}

// DraftCost is the time a draft of k tokens takes in units of a one-token pass of the
// full model (speculate.Coster): k passes through the first E layers, the predictor and
// the LM head, by their weights.
func (d *Drafter) DraftCost(k int) float64 {
	if d.t.Model == nil {
		return 0
	}
	cfg := &d.t.Model.Config
	layer := float64(cfg.Dim)*float64(2*cfg.QDim()+2*cfg.KVDim()) + 3*float64(cfg.Dim)*float64(cfg.FFN)
	pred := float64(2 * d.pred.Rank * d.pred.Dim)
	if d.pred.Rank == d.pred.Dim {
		pred /= 2
	}
	h := headCost(cfg)
	draftHead := h
	if d.sub != nil {
		draftHead *= float64(len(d.sub.IDs())) / float64(cfg.Vocab)
	}
	return float64(k) * (float64(d.pred.Layer) + draftHead + pred/layer) / (float64(cfg.Layers) + h)
}

var _ speculate.Coster = (*Drafter)(nil)
