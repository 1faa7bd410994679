package decode

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"squeeze/runtime/model"
	"squeeze/runtime/sample"
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
	// Prefix, if set, is a fixed context the prompt continues (model.Prefix): the
	// prompt and the generated tokens take the positions after it, and every forward
	// pass attends to it. The KV cache then holds only the prompt and the generated
	// tokens: ContextLen counts those, and its default is the model's context length
	// minus Prefix.Len() (at least one position).
	Prefix model.Prefix
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
// time.
func generate(ctx context.Context, m lm, tok codec, prompt []int32, opts *Options) (Result, error) {
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
	finish := func(reason StopReason) {
		res.StopReason = reason
		if len(res.Tokens) > 0 {
			res.DecodeDuration = time.Since(first)
		}
		res.Text = out.text.String()
	}
	for {
		id, err := sampler.Sample(logits)
		if err != nil {
			finish(StopError)
			return res, fmt.Errorf("token %d: %w", len(res.Tokens), err)
		}
		if len(res.Tokens) == 0 {
			first = time.Now()
		}
		sampler.Accept(id)
		res.Tokens = append(res.Tokens, id)

		if tok.isEOG(id) {
			err := out.flush(stream)
			finish(StopEOG)
			if err != nil {
				res.StopReason = StopError
			}
			return res, err
		}
		found, err := out.push(stream.Add(id))
		if err != nil {
			finish(StopError)
			return res, err
		}
		if found {
			finish(StopString)
			return res, nil
		}
		reason := StopReason("")
		switch {
		case opts.MaxTokens > 0 && len(res.Tokens) >= opts.MaxTokens:
			reason = StopMaxTokens
		case m.used() >= m.capacity():
			reason = StopContext
		case ctx.Err() != nil:
			reason = StopCancelled
		}
		if reason != "" {
			ferr := out.flush(stream)
			finish(reason)
			if reason == StopCancelled {
				return res, ctx.Err()
			}
			if ferr != nil {
				res.StopReason = StopError
			}
			return res, ferr
		}
		if err := m.forward([]int32{id}, logits); err != nil {
			finish(StopError)
			return res, fmt.Errorf("decode token %d: %w", len(res.Tokens), err)
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
