package decode

import (
	"context"
	"errors"
	"unicode/utf8"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
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
// generated token, until a StopReason applies. Text streams through opts.OnText.
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
	cache, err := e.Model.NewCache(opts.ContextLen, opts.Cache)
	if err != nil {
		return Result{PromptTokens: len(prompt)}, err
	}
	m := &modelLM{m: e.Model, c: cache, p: pool}
	return generate(ctx, m, tokenizerCodec{e.Tokenizer}, prompt, &opts)
}

// modelLM adapts a model and its cache to the generation loop.
type modelLM struct {
	m *model.Model
	c *model.Cache
	p *kernels.Pool
}

func (l *modelLM) forward(tokens []int32, logits []float32) error {
	return l.m.Forward(l.p, l.c, tokens, logits, nil)
}
func (l *modelLM) used() int     { return l.c.Len() }
func (l *modelLM) capacity() int { return l.c.Cap() }
func (l *modelLM) vocab() int    { return l.m.Config.Vocab }
func (l *modelLM) maxBatch() int { return model.MaxBatch }

// tokenizerCodec adapts a Tokenizer to the generation loop.
type tokenizerCodec struct{ t *tokenizer.Tokenizer }

func (c tokenizerCodec) isEOG(id int32) bool { return c.t.IsEOG(id) }
func (c tokenizerCodec) newStream() textStream {
	return &prefixStream{t: c.t}
}

// prefixStream decodes incrementally by decoding the whole generated sequence and
// releasing the new bytes up to the last complete UTF-8 character, so it inherits
// Decode's handling of leading spaces and control tokens exactly.
type prefixStream struct {
	t    *tokenizer.Tokenizer
	ids  []int32
	sent int // bytes of Decode(ids) already released
}

func (s *prefixStream) Add(id int32) string {
	s.ids = append(s.ids, id)
	text := s.t.Decode(s.ids)
	if len(text) < s.sent {
		return "" // cannot happen for a prefix-stable decoder; never re-send
	}
	end := completeUTF8(text, s.sent)
	out := text[s.sent:end]
	s.sent = end
	return out
}

func (s *prefixStream) Flush() string {
	text := s.t.Decode(s.ids)
	if len(text) <= s.sent {
		return ""
	}
	out := text[s.sent:]
	s.sent = len(text)
	return out
}

// completeUTF8 returns the end of the longest prefix of text that does not stop inside
// a UTF-8 sequence which more bytes could still complete. It scans from start. Invalid
// bytes count as complete (they are passed on as they are).
func completeUTF8(text string, start int) int {
	i := start
	for i < len(text) {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size <= 1 && !utf8.FullRuneInString(text[i:]) {
			return i // an incomplete sequence at the end: wait for more bytes
		}
		i += size
	}
	return i
}
