package decode

import (
	"context"
	"errors"
	"fmt"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/speculate"
	"squeeze/runtime/tokenizer"
)

// Engine is what a generation runs on: a model, its tokenizer and a pool of threads.
// An Engine may run generations one after another; each gets a fresh KV cache. Running
// several at once needs one Pool per goroutine.
type Engine struct {
	// Model and Tokenizer must come from the same GGUF file.
	Model     *model.Model
	Tokenizer *tokenizer.Tokenizer
	// Pool runs the matrix products. nil means a pool of all cores for each call.
	Pool *kernels.Pool
}

// Generate encodes prompt (with BOS when the tokenizer's metadata asks for it) and
// continues it. See GenerateTokens.
func (e *Engine) Generate(ctx context.Context, prompt string, opts Options) (Result, error) {
	if e.Tokenizer == nil {
		return Result{}, errors.New("decode: engine has no tokenizer")
	}
	return e.GenerateTokens(ctx, e.Tokenizer.Encode(prompt, true), opts)
}

// GenerateTokens continues the prompt ids: one batched prefill, then one forward pass per
// generated token, until a StopReason applies. Text streams through opts.OnText. The KV
// cache holds opts.ContextLen positions, or fewer when the prompt and opts.MaxTokens
// need fewer, or, with opts.Spill, Spill.After+Spill.Block (or the prompt, if longer).
//
// The Result is filled in on every return: when ctx is cancelled Generate emits the text
// completed so far, and returns the Result with StopCancelled and ctx.Err(). Other errors
// (an invalid option, a prompt that does not fit, a failing OnText) are returned with
// what was generated before them.
func (e *Engine) GenerateTokens(ctx context.Context, prompt []int32, opts Options) (Result, error) {
	if e.Model == nil || e.Tokenizer == nil {
		return Result{}, errors.New("decode: engine needs a model and a tokenizer")
	}
	if err := opts.Validate(); err != nil {
		return Result{PromptTokens: len(prompt)}, err
	}
	pool := e.Pool
	if pool == nil {
		pool = kernels.NewPool(0)
		defer pool.Close()
	}
	// The cache needs no more positions than the prompt and MaxTokens-1 fed-back tokens
	// can fill: a short generation does not pay for the whole context.
	capacity := opts.ContextLen
	if capacity == 0 {
		capacity = e.Model.Config.ContextLength
		if opts.Prefix != nil {
			capacity = max(1, capacity-opts.Prefix.Len())
		}
	}
	if opts.MaxTokens > 0 && len(prompt) > 0 {
		capacity = min(capacity, len(prompt)+opts.MaxTokens)
	}
	pipelined := opts.Pipeline != nil && opts.Sampling.Greedy() && !penalized(opts.Sampling.RepeatPenalty)
	// Spills keep the cache to After+Block tokens (or the prompt); the pipeline keeps
	// tokens in flight at several cache positions, so it runs without them.
	spill, room := opts.Spill, capacity
	if spill != nil && !pipelined {
		if err := spill.check(opts.Prefix); err != nil {
			return Result{PromptTokens: len(prompt)}, err
		}
		room = min(capacity, max(len(prompt), spill.After+spill.Block))
	} else {
		spill = nil
	}
	cache, err := e.Model.NewCache(room, opts.Cache)
	if err != nil {
		return Result{PromptTokens: len(prompt)}, err
	}
	m := &modelLM{m: e.Model, c: cache, p: pool, opt: model.Options{Prefix: opts.Prefix}, spill: spill, limit: capacity}
	target := speculate.Target{Model: e.Model, Cache: cache, Pool: pool, Prefix: opts.Prefix}
	var policy *speculate.Policy
	var pipe Stepper
	switch {
	case pipelined:
		if pipe, err = opts.Pipeline(target); err != nil {
			return Result{PromptTokens: len(prompt)}, fmt.Errorf("decode: pipeline: %w", err)
		}
	case opts.Speculate != nil && opts.Speculate.Active() && opts.Sampling.Greedy():
		policy = opts.Speculate
		policy.Reset(&target, prompt)
		m.observe(policy.Drafters())
	}
	return generate(ctx, m, tokenizerCodec{e.Tokenizer}, prompt, &opts, policy, pipe)
}

// penalized reports whether a repetition penalty of p changes the logits (sample.Options).
func penalized(p float32) bool { return p != 0 && p != 1 }

// modelLM adapts a model and its cache to the generation loop.
type modelLM struct {
	m   *model.Model
	c   *model.Cache
	p   *kernels.Pool
	opt model.Options // the Prefix of every pass

	observers []speculate.Observer
	pass      model.Options // a decoding pass's options: opt, observed, maybe Exact
	one       [1]int32

	// Spills (Options.Spill), or nil; moved counts the tokens they took out of c, so
	// that a token's place in the generation is moved + its cache position. limit is
	// the generation's capacity, c's own or more when spills keep c small.
	spill *Spill
	moved int
	limit int
}

// observe makes the decoding passes call the Observers among ds.
func (l *modelLM) observe(ds []speculate.Drafter) {
	for _, d := range ds {
		if o, ok := d.(speculate.Observer); ok && o.ObservedLayer() >= 0 {
			l.observers = append(l.observers, o)
		}
	}
}

func (l *modelLM) onLayer(s *model.LayerState) {
	for _, o := range l.observers {
		if o.ObservedLayer() == s.Layer {
			o.Observe(s)
		}
	}
}

func (l *modelLM) forward(tokens []int32, logits []float32) error {
	return l.m.Forward(l.p, l.c, tokens, logits, &l.opt)
}

func (l *modelLM) step(id int32, logits []float32) error {
	l.pass = l.opt
	if len(l.observers) > 0 {
		l.pass.Observe = l.onLayer
	}
	l.one[0] = id
	if err := l.settle(); err != nil {
		return err
	}
	return l.m.Forward(l.p, l.c, l.one[:], logits, &l.pass)
}

func (l *modelLM) verify(tokens []int32, logits []float32) error {
	l.pass = l.opt
	l.pass.Exact, l.pass.AllLogits = true, true
	if len(l.observers) > 0 {
		l.pass.Observe = l.onLayer
	}
	if l.spill != nil {
		return l.verifySpilling(tokens, logits)
	}
	return l.m.Forward(l.p, l.c, tokens, logits, &l.pass)
}

func (l *modelLM) truncate(n int) error {
	if n < l.moved {
		return fmt.Errorf("decode: roll back to token %d, before the %d moved out of the cache", n, l.moved)
	}
	return l.c.Truncate(n - l.moved)
}
func (l *modelLM) used() int     { return l.moved + l.c.Len() }
func (l *modelLM) capacity() int { return l.limit }
func (l *modelLM) vocab() int    { return l.m.Config.Vocab }
func (l *modelLM) maxBatch() int { return model.MaxBatch }

// tokenizerCodec adapts a Tokenizer to the generation loop.
type tokenizerCodec struct{ t *tokenizer.Tokenizer }

func (c tokenizerCodec) isEOG(id int32) bool   { return c.t.IsEOG(id) }
func (c tokenizerCodec) newStream() textStream { return c.t.NewDecoder() }
