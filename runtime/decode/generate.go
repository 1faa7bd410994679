package decode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"squeeze/runtime/model"
	"squeeze/runtime/sample"
	"squeeze/runtime/speculate"
)

// Errors Generate returns for requests it cannot run.
var (
	// ErrEmptyPrompt means the prompt encodes to no tokens, so there is nothing to
	// predict from.
	ErrEmptyPrompt = errors.New("decode: empty prompt")
	// ErrPromptTooLong means the prompt does not fit in the KV cache.
	ErrPromptTooLong = errors.New("decode: prompt longer than the context")
	// ErrOptions means an Options field is out of range.
	ErrOptions = errors.New("decode: invalid options")
)

// StopReason says why generation ended.
type StopReason string

// The reasons generation ends.
const (
	// StopEOG: the model produced an end-of-generation token (EOS or another one the
	// tokenizer marks as ending a turn). Its text is not part of Result.Text.
	StopEOG StopReason = "eos"
	// StopString: the text reached one of Options.Stop.
	StopString StopReason = "stop"
	// StopMaxTokens: Options.MaxTokens tokens were generated.
	StopMaxTokens StopReason = "max_tokens"
	// StopContext: the KV cache is full, so no further token can be computed.
	StopContext StopReason = "context_full"
	// StopCancelled: the context was cancelled; Generate also returns its error.
	StopCancelled StopReason = "cancelled"
	// StopError: something failed (the model, the sampler or OnText); Generate returns
	// the error.
	StopError StopReason = "error"
)

// Options configure a generation. The zero value generates greedily until an
// end-of-generation token or a full cache of the model's context length, in f32, with
// no stop strings and no streaming.
type Options struct {
	// MaxTokens caps the number of generated tokens. 0 means no cap (the cache size
	// still bounds it). Must not be negative.
	MaxTokens int
	// Stop lists strings that end generation when the text contains one. The text up to
	// (not including) the first stop string is returned; empty strings are ignored.
	Stop []string
	// Sampling chooses tokens; its zero value is greedy.
	Sampling sample.Options
	// Cache is the KV cache's storage type; the zero value is model.CacheF32.
	Cache model.CacheType
	// ContextLen is the KV cache's capacity in tokens, prompt included. 0 means the
	// model's trained context length.
	ContextLen int
	// OnText, if set, receives the generated text in order, piece by piece, as soon as
	// each piece is final; concatenated, the pieces equal Result.Text. An error it
	// returns ends generation and is returned by Generate.
	OnText func(text string) error
	// Speculate, if set, decodes speculatively (package speculate): drafts from the
	// policy's drafters are verified in one batched pass each, and the policy chooses
	// the source and length of every draft from running acceptance and cost
	// statistics, or decodes plainly when no draft pays. The generated tokens are
	// exactly those of decoding without speculation; Result.Speculation says what it
	// did. Speculation applies to greedy sampling (Sampling.Greedy()): with a
	// temperature, generation decodes one token per pass. A policy serves one
	// generation at a time and keeps what it learned for the next ones.
	Speculate *speculate.Policy
	// Pipeline, if set, returns a Stepper on the generation's model, KV cache, pool and
	// Prefix (earlyexit.NewPipeline: the pipelined form on a parameter-shared model),
	// which then chooses every token after the first: greedy decoding's tokens, in fewer
	// weight reads. It applies, instead of Speculate, to greedy sampling without a
	// repetition penalty; otherwise generation decodes as if it were not set.
	// Result.Speculation is then empty: the Stepper keeps its own counts.
	Pipeline func(t speculate.Target) (Stepper, error)
	// Prefix, if set, is a fixed context the prompt continues (model.Prefix): the
	// prompt and the generated tokens take the positions after it, and every forward
	// pass attends to it. The KV cache then holds only the prompt and the generated
	// tokens: ContextLen counts those, and its default is the model's context length
	// minus Prefix.Len() (at least one position).
	Prefix model.Prefix
	// Spill, if set (with a Prefix that takes the tokens), moves the oldest tokens of a
	// long generation out of the KV cache into the Prefix, a block at a time, so that the
	// cache keeps only the recent ones (see Spill). It does not apply with Pipeline.
	Spill *Spill
}

// Stepper generates greedy tokens on its own (Options.Pipeline).
type Stepper interface {
	// Start begins after seq, the prompt and the first generated token: the cache
	// holds the prompt, and the token is pending at position Cache.Len().
	Start(seq []int32) error
	// Next returns the greedy token that follows the last one (the first: Start's last
	// token, then Next's).
	Next() (int32, error)
}

// Validate reports an out-of-range option as an error wrapping ErrOptions (or, for
// sampling options, sample.ErrOptions).
func (o *Options) Validate() error {
	if o.MaxTokens < 0 {
		return fmt.Errorf("%w: max tokens %d must be >= 0", ErrOptions, o.MaxTokens)
	}
	if o.ContextLen < 0 {
		return fmt.Errorf("%w: context length %d must be >= 0", ErrOptions, o.ContextLen)
	}
	return o.Sampling.Validate()
}

// Result describes a finished (or cancelled) generation.
type Result struct {
	// Tokens are the generated ids in order, including a final end-of-generation token
	// and the tokens that completed a stop string.
	Tokens []int32
	// Text is the generated text: what OnText received.
	Text string
	// PromptTokens is the number of prompt tokens (BOS included).
	PromptTokens int
	// PrefillDuration is the time the prompt's forward passes took.
	PrefillDuration time.Duration
	// DecodeDuration is the time from the first generated token to the last: it spans
	// len(Tokens)-1 single-token forward passes and their sampling.
	DecodeDuration time.Duration
	// StopReason says why generation ended.
	StopReason StopReason
	// Speculation counts the decoding passes and, when speculation ran, the drafts.
	Speculation speculate.Stats
}

// PrefillTokensPerSecond is the prompt processing rate, or 0 when nothing was timed.
func (r *Result) PrefillTokensPerSecond() float64 {
	return rate(r.PromptTokens, r.PrefillDuration)
}

// DecodeTokensPerSecond is the generation rate after the first token, or 0 when fewer
// than two tokens were generated.
func (r *Result) DecodeTokensPerSecond() float64 {
	if len(r.Tokens) < 2 {
		return 0
	}
	return rate(len(r.Tokens)-1, r.DecodeDuration)
}

func rate(n int, d time.Duration) float64 {
	if n <= 0 || d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// lm is the language model as the generation loop sees it: a causal model with a KV
// cache that forward appends to.
type lm interface {
	// forward runs tokens at the cache's next positions and, if logits is not nil,
	// writes the last token's logits.
	forward(tokens []int32, logits []float32) error
	// used and capacity are the cache's filled and total positions.
	used() int
	capacity() int
	vocab() int
	// maxBatch is the largest batch one forward call should get, so that cancellation
	// is checked between batches of a long prompt.
	maxBatch() int
	// step runs one token of decoding (forward, but decoding passes may be observed).
	step(id int32, logits []float32) error
	// verify runs tokens in one pass that computes each token's logits exactly as a
	// one-token forward call would, writing all of them (len(tokens) x vocab).
	verify(tokens []int32, logits []float32) error
	// truncate drops the cache's positions from n on.
	truncate(n int) error
}

// codec is the tokenizer as the generation loop sees it.
type codec interface {
	isEOG(id int32) bool
	newStream() textStream
}

// textStream turns ids into text incrementally, holding back incomplete UTF-8.
type textStream interface {
	Add(id int32) string
	Flush() string
}

// generate is the loop behind Generate: prefill, then sample and feed back one token at a
// time, or, when policy is not nil, a verified draft at a time, or, when pipe is not nil,
// take every token after the first from pipe.
func generate(ctx context.Context, m lm, tok codec, prompt []int32, opts *Options, policy *speculate.Policy, pipe Stepper) (Result, error) {
	res := Result{PromptTokens: len(prompt)}
	if err := opts.Validate(); err != nil {
		return res, err
	}
	if len(prompt) == 0 {
		return res, ErrEmptyPrompt
	}
	if room := m.capacity() - m.used(); len(prompt) > room {
		return res, fmt.Errorf("%w: %d prompt tokens, room for %d", ErrPromptTooLong, len(prompt), room)
	}
	sampler, err := sample.New(opts.Sampling)
	if err != nil {
		return res, err
	}
	sampler.Accept(prompt...)

	out := emitter{stop: stopper{stops: opts.Stop}, onText: opts.OnText}
	logits := make([]float32, m.vocab())
	start := time.Now()
	for lo := 0; lo < len(prompt); lo += m.maxBatch() {
		if err := ctx.Err(); err != nil {
			res.StopReason = StopCancelled
			res.PrefillDuration = time.Since(start)
			return res, err
		}
		hi := min(len(prompt), lo+m.maxBatch())
		var l []float32
		if hi == len(prompt) {
			l = logits
		}
		if err := m.forward(prompt[lo:hi], l); err != nil {
			res.StopReason = StopError
			return res, fmt.Errorf("prefill: %w", err)
		}
	}
	res.PrefillDuration = time.Since(start)

	stream := tok.newStream()
	var first time.Time
	passes := 0 // decoding passes without a policy (which counts its own)
	finish := func(reason StopReason) {
		res.StopReason = reason
		if len(res.Tokens) > 0 {
			res.DecodeDuration = time.Since(first)
		}
		res.Text = out.text.String()
		if policy != nil {
			res.Speculation = policy.Stats()
		} else {
			res.Speculation = speculate.Stats{Passes: passes}
		}
	}
	// commit appends a token plain decoding has chosen and reports whether generation
	// ends there (with the error to return). A token is in the cache before the one
	// after it is chosen, so when id is chosen the cache holds the prompt and every
	// earlier generated token: the context is full when those fill it.
	commit := func(id int32) (bool, error) {
		res.Tokens = append(res.Tokens, id)
		if tok.isEOG(id) {
			err := out.flush(stream)
			finish(StopEOG)
			if err != nil {
				res.StopReason = StopError
			}
			return true, err
		}
		found, err := out.push(stream.Add(id))
		if err != nil {
			finish(StopError)
			return true, err
		}
		if found {
			finish(StopString)
			return true, nil
		}
		reason := StopReason("")
		switch {
		case opts.MaxTokens > 0 && len(res.Tokens) >= opts.MaxTokens:
			reason = StopMaxTokens
		case len(prompt)+len(res.Tokens)-1 >= m.capacity():
			reason = StopContext
		case ctx.Err() != nil:
			reason = StopCancelled
		}
		if reason == "" {
			return false, nil
		}
		ferr := out.flush(stream)
		finish(reason)
		if reason == StopCancelled {
			return true, ctx.Err()
		}
		if ferr != nil {
			res.StopReason = StopError
		}
		return true, ferr
	}

	var seq, draft, rows []int32 // speculation: prompt and committed tokens; the draft; a pass's tokens
	var all []float32            // speculation: a verification pass's logits
	if policy != nil {
		seq = append(seq, prompt...)
	}
	id, err := sampler.Sample(logits)
	for {
		if err != nil {
			finish(StopError)
			return res, fmt.Errorf("token %d: %w", len(res.Tokens), err)
		}
		if len(res.Tokens) == 0 {
			first = time.Now()
		}
		sampler.Accept(id)
		if done, err := commit(id); done {
			return res, err
		}
		if pipe != nil {
			if len(res.Tokens) == 1 {
				if err := pipe.Start(append(slices.Clone(prompt), id)); err != nil {
					finish(StopError)
					return res, fmt.Errorf("start the pipeline: %w", err)
				}
			}
			id, err = pipe.Next()
			continue
		}
		src := -1
		if policy != nil {
			seq = append(seq, id)
			room := m.capacity() - m.used() - 1
			if opts.MaxTokens > 0 {
				room = min(room, opts.MaxTokens-len(res.Tokens)-1)
			}
			draft, src = policy.Draft(draft[:0], seq, room)
		}
		if src < 0 {
			t0 := time.Now()
			if err := m.step(id, logits); err != nil {
				finish(StopError)
				return res, fmt.Errorf("decode token %d: %w", len(res.Tokens), err)
			}
			if policy != nil {
				policy.Plain(time.Since(t0))
			} else {
				passes++
			}
			id, err = sampler.Sample(logits)
			continue
		}

		// Verify: the pending token and the draft in one pass; row i's logits choose
		// the token after rows 0..i, which is accepted while it equals draft[i].
		base, vocab := m.used(), m.vocab()
		rows = append(append(rows[:0], id), draft...)
		if need := len(rows) * vocab; len(all) < need {
			all = make([]float32, need)
		}
		t0 := time.Now()
		if err := m.verify(rows, all); err != nil {
			finish(StopError)
			return res, fmt.Errorf("verify %d drafted tokens after token %d: %w", len(draft), len(res.Tokens), err)
		}
		elapsed := time.Since(t0)
		accepted := 0
		for {
			id, err = sampler.Sample(all[accepted*vocab : (accepted+1)*vocab])
			if err != nil || accepted == len(draft) || id != draft[accepted] {
				break
			}
			sampler.Accept(id)
			accepted++
		}
		if terr := m.truncate(base + 1 + accepted); terr != nil {
			finish(StopError)
			return res, fmt.Errorf("roll back a draft: %w", terr)
		}
		policy.Verified(src, len(draft), accepted, elapsed)
		for _, d := range draft[:accepted] {
			if done, err := commit(d); done {
				return res, err
			}
			seq = append(seq, d)
		}
	}
}

// emitter passes text through the stop-string filter to the callback and keeps what it
// passed.
type emitter struct {
	stop   stopper
	onText func(string) error
	text   strings.Builder
}

// push sends a decoded piece on; found reports a completed stop string.
func (e *emitter) push(piece string) (found bool, err error) {
	out, found := e.stop.push(piece)
	return found, e.send(out)
}

// flush sends what the decoder and the stop filter still hold, at the end of generation.
func (e *emitter) flush(stream textStream) error {
	out, found := e.stop.push(stream.Flush())
	if !found {
		out += e.stop.flush()
	}
	return e.send(out)
}

func (e *emitter) send(s string) error {
	if s == "" {
		return nil
	}
	e.text.WriteString(s)
	if e.onText == nil {
		return nil
	}
	return e.onText(s)
}
