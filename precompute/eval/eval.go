// Package eval measures what squeezed attention costs in quality, with the fixed-context
// continuation protocol of DESIGN.md: the corpus's tokens are cut into consecutive
// non-overlapping windows of Context + Query tokens; in each window the first Context
// tokens are the fixed context (its first token set to BOS) and the next Query tokens the
// query. The context is squeezed exactly as precompute does (precompute.Squeeze, the same
// defaults, the calibration ladder extended by every evaluated budget), then the query
// runs through a sparse.Session on it at each budget and is scored against a dense
// reference.
//
// Scoring. Window tokens are w[0..C+Q-1] (C = Context, Q = Query). The scored tokens are
// w[C+1..C+Q-1]: each is predicted by the logits of the query token before it, from
// everything before it in the window (the fixed context and the earlier query tokens).
// w[C] itself is not scored: it is predicted by the context's last token, whose logits
// come from the dense prefill in both runs and would only dilute the comparison. So each
// window scores Q-1 tokens.
//
// The dense reference is one pass of the whole window through the model with an f32 KV
// cache. The squeezed run attends to the context's f16 key and value rows through the
// session (KV "f16"); at budget 1 the session reads every key, so that row measures the
// f16 storage alone.
//
// Modes. In ModePrefill the Q query tokens go through the model in one Forward call, so
// each layer makes one lookup per KV head for the whole query block, as squeeze ask
// prefills a query. In ModeDecode the query tokens go one at a time, each with a fresh
// lookup, as generated tokens are; the thresholds are calibrated for such single-token
// lookups, so this mode is the one the calibrated budget describes. Options.Block splits
// the prefill into blocks of fewer tokens, each with its own lookup.
//
// KV encodings. Options.KV lists how the context's rows are stored: f16 as precompute
// stores them by default, or quantized (precompute.Quantize on the same squeezed context,
// so every encoding shares the window's prefill, trees and thresholds). Every encoding
// is evaluated at every mode and budget: at budget 1 the row measures the encoding alone,
// below it quantization and squeezing together.
//
// Attention mass. While the squeezed run attends, a second, dense session on the same
// context computes the log-sum-exp of every query head's scores over all the context's
// keys; the squeezed session returns the log-sum-exp over the keys it read (selected
// clusters and the always-attended sink and window). exp(lse_read − lse_all) is the share
// of the dense softmax mass over the fixed context that the read keys hold, for that
// query's scores; AttentionMass averages it over layers, query heads and query tokens.
package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"squeeze/calibrate"
	"squeeze/format"
	"squeeze/precompute"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// Defaults of Options' zero fields.
const (
	DefaultContext = 4096
	DefaultQuery   = 256
)

// DefaultBudgets are the budgets evaluated when Options.Budgets is nil.
var DefaultBudgets = []float64{1, 0.5, 0.25, 0.125}

// ErrInvalid means bad options, or a corpus too short for one window.
var ErrInvalid = errors.New("eval: invalid input")

// Mode selects how the query tokens go through the session.
type Mode string

// The modes; see the package documentation.
const (
	ModePrefill Mode = "prefill"
	ModeDecode  Mode = "decode"
)

// Options configure Run.
type Options struct {
	// Windows is the number of windows evaluated (0: as many as the tokens hold).
	Windows int
	// Context and Query are the window's fixed context and query lengths (0: the
	// defaults).
	Context, Query int
	// Budgets are the budgets evaluated (nil: DefaultBudgets); each in (0, 1].
	Budgets []float64
	// Modes are the query modes evaluated (nil: ModePrefill).
	Modes []Mode
	// Block, if positive, splits the query into blocks of Block tokens in ModePrefill,
	// each one Forward call with its own lookup (0: the whole query in one block).
	Block int
	// Squeeze configures the squeezing as precompute's options do; its Budgets (the
	// ladder, nil for precompute.DefaultBudgets) get the evaluated budgets added. Its
	// Progress and KV are ignored.
	Squeeze precompute.SqueezeOptions
	// KV are the KV encodings evaluated, in order (nil: f16 only); see the package
	// documentation.
	KV []precompute.KVOptions
	// Progress, if set, is called after each window, from the calling goroutine.
	Progress func(Progress)
}

// Progress reports the windows done.
type Progress struct {
	Done, Total int
	// Elapsed is the time since Run started; Window the time the last window took.
	Elapsed, Window time.Duration
}

// Row is the result of one configuration (mode and budget) over all the windows. The
// JSON names are what squeeze eval --json prints: add fields, never rename one.
type Row struct {
	// KV is the context's key and value encoding ("f16", "nuq3", ...); Outliers, QNorm,
	// PostRoPE, PerTokenKeys and Rounding its quantization settings (zero values and ""
	// for f16); BitsPerElement the storage per key or value element, overheads included
	// (16 for f16).
	KV             string  `json:"kv"`
	Outliers       float64 `json:"outliers"`
	QNorm          bool    `json:"qnorm"`
	PostRoPE       bool    `json:"post_rope"`
	PerTokenKeys   bool    `json:"per_token_keys"`
	Rounding       string  `json:"rounding"`
	BitsPerElement float64 `json:"bits_per_element"`
	// Mode is how the query went through the session.
	Mode Mode `json:"mode"`
	// Budget is the requested budget.
	Budget float64 `json:"budget"`
	// Windows is the number of windows; Tokens the number of scored tokens.
	Windows int `json:"windows"`
	Tokens  int `json:"tokens"`
	// PPL is the squeezed run's perplexity over the scored tokens, PPLDense the dense
	// reference's, PPLRatio PPL/PPLDense.
	PPL      float64 `json:"ppl"`
	PPLDense float64 `json:"ppl_dense"`
	PPLRatio float64 `json:"ppl_ratio"`
	// KL is KL(dense || squeezed) of the next-token distributions in nats, averaged over
	// the scored positions; Top1 the fraction of them where both argmaxes agree.
	KL   float64 `json:"kl"`
	Top1 float64 `json:"top1"`
	// RealizedBudget is (context keys read + centroids scored) / context keys, over all
	// the lookups (sparse.Stats.RealizedBudget); KeyFraction its keys part.
	RealizedBudget float64 `json:"realized_budget"`
	KeyFraction    float64 `json:"key_fraction"`
	// AttentionMass is the mean share of the dense softmax mass over the context that
	// the keys read hold (see the package documentation).
	AttentionMass float64 `json:"attention_mass"`
}

// config is one evaluated (encoding, mode, budget) and its running sums.
type config struct {
	kv     int // index in the encodings
	mode   Mode
	budget float64

	nll, kl     float64
	top1, count int
	stats       sparse.Stats
	mass        float64
	massN       int64
}

// Windows returns the first n windows of c+q tokens cut from tokens (n <= 0: all that
// fit), each a copy with its first token set to bos (bos < 0 leaves it).
func Windows(tokens []int32, c, q, n int, bos int32) [][]int32 {
	size := c + q
	if size <= 0 {
		return nil
	}
	count := len(tokens) / size
	if n > 0 {
		count = min(count, n)
	}
	ws := make([][]int32, count)
	for i := range ws {
		w := slices.Clone(tokens[i*size : (i+1)*size])
		if bos >= 0 {
			w[0] = bos
		}
		ws[i] = w
	}
	return ws
}

// Run evaluates m (loaded from f) on tokens (the tokenized corpus) and returns one Row
// per mode and budget, modes in the order given, budgets in the order given. bos is the
// model's BOS token (−1 for none). Errors: ErrInvalid, the squeezing's and model's
// errors, ctx's error on cancellation.
func Run(ctx context.Context, m *model.Model, f *gguf.File, pool *kernels.Pool, tokens []int32, bos int32, o Options) ([]Row, error) {
	if o.Context == 0 {
		o.Context = DefaultContext
	}
	if o.Query == 0 {
		o.Query = DefaultQuery
	}
	if o.Budgets == nil {
		o.Budgets = DefaultBudgets
	}
	if o.Modes == nil {
		o.Modes = []Mode{ModePrefill}
	}
	switch {
	case pool == nil:
		return nil, fmt.Errorf("%w: no pool", ErrInvalid)
	case o.Context < 4:
		return nil, fmt.Errorf("%w: context of %d tokens, want at least 4", ErrInvalid, o.Context)
	case o.Query < 2:
		return nil, fmt.Errorf("%w: query of %d tokens, want at least 2 (the first is not scored)", ErrInvalid, o.Query)
	case o.Windows < 0:
		return nil, fmt.Errorf("%w: %d windows", ErrInvalid, o.Windows)
	case o.Block < 0:
		return nil, fmt.Errorf("%w: blocks of %d tokens", ErrInvalid, o.Block)
	case len(o.Budgets) == 0:
		return nil, fmt.Errorf("%w: no budgets", ErrInvalid)
	case o.Context+o.Query > m.Config.ContextLength:
		return nil, fmt.Errorf("%w: windows of %d tokens exceed the model's context length of %d", ErrInvalid, o.Context+o.Query, m.Config.ContextLength)
	}
	for _, b := range o.Budgets {
		if !(b > 0 && b <= 1) {
			return nil, fmt.Errorf("%w: budget %v, want (0, 1]", ErrInvalid, b)
		}
	}
	for _, md := range o.Modes {
		if md != ModePrefill && md != ModeDecode {
			return nil, fmt.Errorf("%w: mode %q, want %q or %q", ErrInvalid, md, ModePrefill, ModeDecode)
		}
	}
	windows := Windows(tokens, o.Context, o.Query, o.Windows, bos)
	if len(windows) == 0 {
		return nil, fmt.Errorf("%w: %d tokens, a window needs %d", ErrInvalid, len(tokens), o.Context+o.Query)
	}
	if o.Windows > 0 && len(windows) < o.Windows {
		return nil, fmt.Errorf("%w: %d windows asked, the %d tokens hold %d of %d tokens", ErrInvalid, o.Windows, len(tokens), len(windows), o.Context+o.Query)
	}

	kvs := o.KV
	if kvs == nil {
		kvs = []precompute.KVOptions{{Encoding: format.KVEncodingF16}}
	}
	so := o.Squeeze
	so.Progress = nil
	so.KV = precompute.KVOptions{}
	for i, kv := range kvs {
		if _, _, err := format.ParseKVEncoding(kvName(kv)); err != nil {
			return nil, fmt.Errorf("%w: KV %d: %w", ErrInvalid, i, err)
		}
		if kvName(kv) != format.KVEncodingF16 && !kv.PostRoPE {
			so.KeepPreRoPE = true
		}
	}
	ladder := so.Budgets
	if ladder == nil {
		ladder = precompute.DefaultBudgets
	}
	ladder = slices.Clone(ladder)
	for _, b := range o.Budgets {
		if b < 1 && !slices.Contains(ladder, b) {
			ladder = append(ladder, b)
		}
	}
	so.Budgets = ladder

	var cfgs []*config
	for k := range kvs {
		for _, md := range o.Modes {
			for _, b := range o.Budgets {
				cfgs = append(cfgs, &config{kv: k, mode: md, budget: b})
			}
		}
	}
	bits := make([]float64, len(kvs)) // summed over windows
	e, err := newEvaluator(m, pool, o.Context, o.Query)
	if err != nil {
		return nil, err
	}
	e.block = o.Query
	if o.Block > 0 {
		e.block = o.Block
	}
	var denseNLL float64
	denseCount := 0
	start := time.Now()
	for wi, w := range windows {
		ws := time.Now()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		nll, err := e.dense(w)
		if err != nil {
			return nil, fmt.Errorf("eval: window %d: dense pass: %w", wi, err)
		}
		denseNLL += nll
		denseCount += o.Query - 1
		sq, err := precompute.Squeeze(ctx, m, f, pool, w[:o.Context], so)
		if err != nil {
			return nil, fmt.Errorf("eval: window %d: %w", wi, err)
		}
		var sens *calibrate.Sensitivity // the window's, shared by the encodings that weigh by it
		for k, kv := range kvs {
			sc := sq.Context
			if kvName(kv) != format.KVEncodingF16 {
				if kv.Sensitivity == nil && kv.Calib == nil {
					if sens == nil {
						if sens, err = kv.Sensitivities(ctx, m, pool, w[:o.Context]); err != nil {
							return nil, fmt.Errorf("eval: window %d: %w", wi, err)
						}
					}
					kv.Sensitivity = sens
				}
				if sc, _, err = precompute.Quantize(ctx, sq, m, f, pool, kv); err != nil {
					return nil, fmt.Errorf("eval: window %d: %w", wi, err)
				}
			}
			bits[k] += bitsPerElement(sc, m.Config.HeadDim)
			for _, c := range cfgs {
				if c.kv != k {
					continue
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if err := e.squeezed(sc, w, c); err != nil {
					return nil, fmt.Errorf("eval: window %d: %s %s budget %g: %w", wi, kvName(kv), c.mode, c.budget, err)
				}
			}
		}
		if o.Progress != nil {
			o.Progress(Progress{Done: wi + 1, Total: len(windows), Elapsed: time.Since(start), Window: time.Since(ws)})
		}
	}
	pplDense := math.Exp(denseNLL / float64(denseCount))
	rows := make([]Row, len(cfgs))
	for i, c := range cfgs {
		ppl := math.Exp(c.nll / float64(c.count))
		kv := kvs[c.kv]
		r := Row{
			KV: kvName(kv), BitsPerElement: bits[c.kv] / float64(len(windows)),
			Mode: c.mode, Budget: c.budget, Windows: len(windows), Tokens: c.count,
			PPL: ppl, PPLDense: pplDense, PPLRatio: ppl / pplDense,
			KL: c.kl / float64(c.count), Top1: float64(c.top1) / float64(c.count),
			RealizedBudget: c.stats.RealizedBudget(), KeyFraction: c.stats.KeysFraction(),
			AttentionMass: 1,
		}
		if c.massN > 0 {
			r.AttentionMass = c.mass / float64(c.massN)
		}
		if r.KV != format.KVEncodingF16 {
			r.Outliers, r.QNorm, r.PostRoPE, r.PerTokenKeys = kv.Outliers, kv.UsesQNorm(), kv.PostRoPE, kv.PerTokenKeys
			r.Rounding = kv.Rounding.String()
		}
		rows[i] = r
	}
	return rows, nil
}

// kvName is kv's encoding, "" read as f16.
func kvName(kv precompute.KVOptions) string {
	if kv.Encoding == "" {
		return format.KVEncodingF16
	}
	return kv.Encoding
}

// bitsPerElement is the storage of c's rows per key or value element, overheads included
// (kvquant.Bytes), as squeeze inspect reports it.
func bitsPerElement(c *sparse.Context, headDim int) float64 {
	var bytes, elements int64
	for _, heads := range c.Layers {
		for _, hd := range heads {
			for _, r := range []sparse.Rows{hd.Keys, hd.Values, hd.AlwaysK, hd.AlwaysV} {
				bytes += int64(kvquant.Bytes(r))
				elements += int64(r.Len() * headDim)
			}
		}
	}
	if elements == 0 {
		return 0
	}
	return float64(8*bytes) / float64(elements)
}
