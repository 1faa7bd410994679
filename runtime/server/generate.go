package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"squeeze/runtime/decode"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/sparse"
	"squeeze/runtime/speculate"
)

// slot is where one request generates: a thread pool, and the speculation policies it
// keeps per model and mode. A policy serves one generation at a time (the slot's) and
// keeps its acceptance and cost estimates from one generation to the next, so a slot's
// requests to a model learn from the earlier ones.
type slot struct {
	pool     *kernels.Pool
	policies map[policyKey]*speculate.Policy
}

type policyKey struct {
	model *Model
	mode  speculate.Mode
}

// policy returns the slot's policy for m and mode, made on first use with opt and the
// drafters of m: one over m's context n-grams, and one from m's early-exit predictor
// when it has one, restricted to the context's tokens (as squeeze ask makes them; the
// mode picks among them).
func (sl *slot) policy(m *Model, mode speculate.Mode, opt speculate.PolicyOptions) *speculate.Policy {
	k := policyKey{m, mode}
	p, ok := sl.policies[k]
	if !ok {
		drafters := []speculate.Drafter{m.ngram.Clone()}
		if m.Predictor != nil {
			d := earlyexit.NewDrafter(m.Predictor)
			d.Vocab = m.Context.Tokens // drafts read the LM head's rows of the context's and the answer's tokens only
			drafters = append(drafters, d)
		}
		p = speculate.NewPolicy(mode, drafters, opt)
		sl.policies[k] = p
	}
	return p
}

// scheduler hands out generation slots: up to len(slots) requests generate at once
// and up to maxWait more wait, in arrival order.
type scheduler struct {
	free     chan *slot
	slots    []*slot
	threads  int
	maxWait  int64
	waiting  atomic.Int64
	inFlight atomic.Int64
}

func newScheduler(slots, maxWait, threads int) *scheduler {
	q := &scheduler{free: make(chan *slot, slots), threads: threads, maxWait: int64(maxWait)}
	for range slots {
		sl := &slot{pool: kernels.NewPool(threads), policies: map[policyKey]*speculate.Policy{}}
		q.slots = append(q.slots, sl)
		q.free <- sl
	}
	return q
}

// errQueueFull means every slot is busy and the queue is full.
var errQueueFull = errors.New("queue full")

// acquire takes a slot, waiting in the queue if none is free. It fails with
// errQueueFull, or ctx's error if ctx ends while waiting.
func (q *scheduler) acquire(ctx context.Context) (*slot, error) {
	select {
	case sl := <-q.free:
		q.inFlight.Add(1)
		return sl, nil
	default:
	}
	if q.waiting.Add(1) > q.maxWait {
		q.waiting.Add(-1)
		return nil, errQueueFull
	}
	defer q.waiting.Add(-1)
	select {
	case sl := <-q.free:
		q.inFlight.Add(1)
		return sl, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release gives a slot back.
func (q *scheduler) release(sl *slot) {
	q.inFlight.Add(-1)
	q.free <- sl
}

// close stops the pools; no slot may be in use.
func (q *scheduler) close() {
	for _, sl := range q.slots {
		sl.pool.Close()
	}
}

// job is a validated generation request.
type job struct {
	m      *Model
	prompt []int32
	p      *genParams
	stop   []string       // the request's stop strings and the template's
	budget float64        // requested budget (the model's default if the request gave none)
	max    int            // max_tokens in effect
	spec   speculate.Mode // speculation mode (ModeOff when sampling)
}

// outcome is what a generation did, for the response, the log and the metrics.
type outcome struct {
	res       decode.Result
	stats     sparse.Stats
	budget    float64 // the calibrated budget used (1 when dense)
	dense     bool
	queue     time.Duration // waiting for a slot
	ttft      time.Duration // arrival to first token
	generate  time.Duration // holding the slot
	pipelined bool          // decoded by the pipelined form (earlyexit.Pipeline)
	appended  int           // tokens whose values were quantized on append
}

// realized is the realized budget: 1 for a dense session.
func (o *outcome) realized() float64 {
	if o.dense {
		return 1
	}
	return o.stats.RealizedBudget()
}

// speculation names how the answer was decoded: "pipeline" for the pipelined form,
// else the speculation mode in effect.
func (o *outcome) speculation(mode speculate.Mode) string {
	if o.pipelined {
		return "pipeline"
	}
	return mode.String()
}

// newJob checks a request's prompt against the limits and fills in max_tokens.
func (s *Server) newJob(m *Model, prompt []int32, p *genParams, extraStops []string) (*job, *apiError) {
	if len(prompt) == 0 {
		return nil, badRequest("prompt", "the prompt is empty: send some text to continue after the fixed context")
	}
	vocab := int32(m.Model.Config.Vocab)
	for _, id := range prompt {
		if id < 0 || id >= vocab {
			return nil, badRequest("prompt", "token id %d is outside the vocabulary of %d tokens", id, vocab)
		}
	}
	limit := s.requestTokens(m)
	if len(prompt) >= limit {
		return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "prompt", Code: "context_length_exceeded",
			Message: fmt.Sprintf("the prompt has %d tokens; model %s allows %d prompt and answer tokens per request (after its %d-token fixed context): shorten the prompt",
				len(prompt), m.ID, limit, len(m.Context.Tokens))}
	}
	maxTokens := p.maxTokens
	switch {
	case maxTokens > s.cfg.MaxTokens:
		return nil, badRequest("max_tokens", "max_tokens %d is above this server's limit of %d: ask for fewer", maxTokens, s.cfg.MaxTokens)
	case maxTokens == 0:
		maxTokens = min(s.cfg.MaxTokens, limit-len(prompt))
	case len(prompt)+maxTokens > limit:
		return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "max_tokens", Code: "context_length_exceeded",
			Message: fmt.Sprintf("the prompt has %d tokens and max_tokens is %d; model %s allows %d per request: lower max_tokens to %d or shorten the prompt",
				len(prompt), maxTokens, m.ID, limit, limit-len(prompt))}
	}
	budget := p.budget
	if budget == 0 {
		budget = m.defaultBudget()
	}
	if _, _, err := m.Context.Threshold(budget); err != nil {
		lowest := math.Inf(1)
		if len(m.Context.Thresholds) > 0 {
			lowest = m.Context.Thresholds[0].Budget
		}
		return nil, badRequest("budget", "budget %g is below the smallest budget model %s was calibrated for (%g): ask for %g or more",
			budget, m.ID, lowest, lowest)
	}
	stops := append(append([]string(nil), p.stop...), extraStops...)
	spec := s.cfg.Speculate
	if p.speculate != "" {
		spec = p.speculateMode
	}
	if !p.sampling.Greedy() { // speculation keeps greedy decoding's tokens only
		spec = speculate.ModeOff
	}
	return &job{m: m, prompt: prompt, p: p, stop: stops, budget: budget, max: maxTokens, spec: spec}, nil
}

// run generates j's answer on a slot. started, if set, runs once the slot is taken and
// generation is about to begin; onText receives the text as decode.Options.OnText. A
// nil error with o.res filled in is a finished generation; errQueueFull, a cancelled
// ctx (o.res.StopReason "cancelled" once generation began) and generation failures
// are returned as errors.
func (s *Server) run(ctx context.Context, j *job, arrival time.Time, started func(), onText func(string) error) (o outcome, err error) {
	sl, err := s.sched.acquire(ctx)
	if err != nil {
		return o, err
	}
	defer s.sched.release(sl)
	pool := sl.pool
	begin := time.Now()
	o.queue = begin.Sub(arrival)
	sess, err := sparse.NewSession(j.m.Context, j.m.Model, pool, j.budget)
	if err != nil {
		return o, fmt.Errorf("session: %w", err)
	}
	o.budget, o.dense = sess.Threshold().Budget, sess.Dense()
	if started != nil {
		started()
	}
	if s.slotHook != nil {
		s.slotHook(ctx)
	}
	engine := decode.Engine{Model: j.m.Model, Tokenizer: j.m.Tokenizer, Pool: pool}
	opts := decode.Options{
		MaxTokens:  j.max,
		Stop:       j.stop,
		Sampling:   j.p.sampling,
		Cache:      s.cfg.Cache,
		ContextLen: len(j.prompt) + j.max,
		OnText:     onText,
		Prefix:     sess,
	}
	var pipe *earlyexit.Pipeline
	if j.spec != speculate.ModeOff {
		opts.Speculate = sl.policy(j.m, j.spec, s.policy)
		if j.spec.Allows(earlyexit.DrafterName) && j.m.BlockShare < j.m.Model.Config.Layers {
			// A parameter-shared model decodes with the pipelined form (decode falls back
			// to the policy where the sampling rules it out).
			opts.Pipeline = func(t speculate.Target) (decode.Stepper, error) {
				var err error
				pipe, err = earlyexit.NewPipeline(t, earlyexit.PipelineOptions{Vocab: j.m.Context.Tokens,
					Drafter: j.m.ngram.Clone(), MinAccept: earlyexit.DefaultMinAccept})
				return pipe, err
			}
		}
	}
	var app *kvquant.Appender
	if s.cfg.KVAppendAfter > 0 && j.m.ValueTypes != nil {
		if app, err = kvquant.NewAppender(sess, j.m.Model, j.m.ValueTypes, j.m.ValueOutliers); err != nil {
			return o, fmt.Errorf("kv append: %w", err)
		}
		app.Pool = pool
		opts.Spill = &decode.Spill{To: app, After: s.cfg.KVAppendAfter, Block: decode.DefaultSpillBlock}
	}
	o.res, err = engine.GenerateTokens(ctx, j.prompt, opts)
	if app != nil {
		o.appended = app.Tokens()
	}
	if pipe != nil {
		o.res.Speculation, o.pipelined = pipe.Stats().Speculation(), true
	}
	o.generate = time.Since(begin)
	o.ttft = begin.Sub(arrival) + o.res.PrefillDuration
	o.stats = sess.Stats()
	if o.res.StopReason != "" {
		s.metrics.generation(&o, j.m.ID)
	}
	return o, err
}

// retryAfter estimates the seconds until a slot frees, for a 429's Retry-After.
func (s *Server) retryAfter() int {
	per := s.metrics.serviceTime().Seconds()
	wait := per * float64(s.sched.waiting.Load()+1) / float64(len(s.sched.slots))
	return max(1, int(math.Ceil(wait)))
}
