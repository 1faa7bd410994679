package decode

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/sample"
)

// fakeLM is a deterministic "model": after each forward pass the logits put 10 on the
// token next(history) and 0 elsewhere, so greedy decoding produces next's choices.
type fakeLM struct {
	nvocab  int
	cap     int
	batch   int
	history []int32
	calls   [][]int32 // the tokens of every forward call
	logited []bool    // whether each call asked for logits
	next    func(history []int32) int32
}

func (f *fakeLM) forward(tokens []int32, logits []float32) error {
	if len(f.history)+len(tokens) > f.cap {
		return errors.New("fake: cache overflow")
	}
	f.history = append(f.history, tokens...)
	f.calls = append(f.calls, slices.Clone(tokens))
	f.logited = append(f.logited, logits != nil)
	if logits != nil {
		clear(logits)
		logits[f.next(f.history)] = 10
	}
	return nil
}
func (f *fakeLM) step(id int32, logits []float32) error { return f.forward([]int32{id}, logits) }

// verify is forward with every token's logits: row i as if the tokens up to i had been
// run alone.
func (f *fakeLM) verify(tokens []int32, logits []float32) error {
	if len(f.history)+len(tokens) > f.cap {
		return errors.New("fake: cache overflow")
	}
	f.calls = append(f.calls, slices.Clone(tokens))
	f.logited = append(f.logited, true)
	for i, t := range tokens {
		f.history = append(f.history, t)
		row := logits[i*f.nvocab : (i+1)*f.nvocab]
		clear(row)
		row[f.next(f.history)] = 10
	}
	return nil
}

func (f *fakeLM) truncate(n int) error {
	if n < 0 || n > len(f.history) {
		return errors.New("fake: truncate out of range")
	}
	f.history = f.history[:n]
	return nil
}

func (f *fakeLM) used() int     { return len(f.history) }
func (f *fakeLM) capacity() int { return f.cap }
func (f *fakeLM) vocab() int    { return f.nvocab }
func (f *fakeLM) maxBatch() int { return f.batch }

// fakeCodec maps ids to fixed pieces; ids in eog end generation.
type fakeCodec struct {
	pieces []string
	eog    map[int32]bool
}

func (c fakeCodec) isEOG(id int32) bool   { return c.eog[id] }
func (c fakeCodec) newStream() textStream { return &fakeStream{c: c} }

type fakeStream struct{ c fakeCodec }

func (s *fakeStream) Add(id int32) string { return s.c.pieces[id] }
func (s *fakeStream) Flush() string       { return "" }

// counting returns a next function that emits 2, 3, 4, ... (mod vocab, skipping 0 and 1)
// after the prompt.
func counting(vocab int) func([]int32) int32 {
	return func(h []int32) int32 { return int32(2 + (len(h)-1)%(vocab-2)) }
}

var letters = fakeCodec{
	// 0 is BOS-like (no text), 1 is EOS.
	pieces: []string{"", "</s>", "a", "b", "\n", "c", "d", "\n", "e", "f"},
	eog:    map[int32]bool{1: true},
}

func newFake(capacity int, next func([]int32) int32) *fakeLM {
	return &fakeLM{nvocab: len(letters.pieces), cap: capacity, batch: 512, next: next}
}

func TestGenerateMaxTokens(t *testing.T) {
	for _, max := range []int{1, 2, 5} {
		m := newFake(100, counting(10))
		var streamed strings.Builder
		opts := Options{MaxTokens: max, OnText: func(s string) error { streamed.WriteString(s); return nil }}
		res, err := generate(context.Background(), m, letters, []int32{0, 2}, &opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StopReason != StopMaxTokens || len(res.Tokens) != max {
			t.Fatalf("max %d: reason %q, %d tokens %v", max, res.StopReason, len(res.Tokens), res.Tokens)
		}
		// The last token is never fed back: max-1 decode passes after one prefill.
		if got := len(m.calls); got != max {
			t.Fatalf("max %d: %d forward calls, want %d", max, got, max)
		}
		if streamed.String() != res.Text {
			t.Fatalf("streamed %q, Result.Text %q", streamed.String(), res.Text)
		}
		if res.PromptTokens != 2 {
			t.Fatalf("PromptTokens = %d, want 2", res.PromptTokens)
		}
	}
}

func TestGenerateGreedyFollowsModel(t *testing.T) {
	// Greedy Generate must produce exactly next's choices, feeding each one back.
	m := newFake(100, counting(10))
	opts := Options{MaxTokens: 7}
	res, err := generate(context.Background(), m, letters, []int32{0}, &opts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{2, 3, 4, 5, 6, 7, 8}
	if !slices.Equal(res.Tokens, want) {
		t.Fatalf("tokens %v, want %v", res.Tokens, want)
	}
	if want := "ab\ncd\ne"; res.Text != want {
		t.Fatalf("text %q, want %q", res.Text, want)
	}
	if !slices.Equal(m.history, []int32{0, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("model saw %v", m.history)
	}
}

func TestGenerateEOG(t *testing.T) {
	// Prompt, then "a", "b", EOS.
	script := []int32{2, 3, 1, 5}
	m := newFake(100, func(h []int32) int32 { return script[len(h)-1] })
	opts := Options{MaxTokens: 10}
	res, err := generate(context.Background(), m, letters, []int32{0}, &opts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopEOG || !slices.Equal(res.Tokens, []int32{2, 3, 1}) || res.Text != "ab" {
		t.Fatalf("reason %q tokens %v text %q; want eos [2 3 1] \"ab\"", res.StopReason, res.Tokens, res.Text)
	}
}

func TestGenerateStopString(t *testing.T) {
	tests := []struct {
		name   string
		stop   []string
		want   string
		tokens int
		reason StopReason
	}{
		// Tokens: a b \n c d \n e f ... The stop "\n\n" never appears; "c" does.
		{"single token stop", []string{"c"}, "ab\n", 4, StopString},
		{"stop across tokens", []string{"d\ne"}, "ab\nc", 7, StopString},
		{"absent stop flushes held text", []string{"\nX"}, "ab\ncd\ne", 7, StopMaxTokens},
		{"earliest stop wins", []string{"e", "b"}, "a", 2, StopString},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFake(100, counting(10))
			var pieces []string
			opts := Options{MaxTokens: 7, Stop: tt.stop, OnText: func(s string) error {
				pieces = append(pieces, s)
				return nil
			}}
			res, err := generate(context.Background(), m, letters, []int32{0}, &opts, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Text != tt.want || len(res.Tokens) != tt.tokens || res.StopReason != tt.reason {
				t.Fatalf("text %q, %d tokens, reason %q; want %q, %d, %q", res.Text, len(res.Tokens), res.StopReason, tt.want, tt.tokens, tt.reason)
			}
			if strings.Join(pieces, "") != res.Text {
				t.Fatalf("streamed %q, Result.Text %q", pieces, res.Text)
			}
			for _, stop := range tt.stop {
				if strings.Contains(strings.Join(pieces, ""), stop) {
					t.Fatalf("stop string %q was emitted: %q", stop, pieces)
				}
			}
		})
	}
}

func TestGenerateCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newFake(1000, counting(10))
	var pieces []string
	opts := Options{OnText: func(s string) error {
		pieces = append(pieces, s)
		if len(pieces) == 3 {
			cancel()
		}
		return nil
	}}
	res, err := generate(ctx, m, letters, []int32{0}, &opts, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.StopReason != StopCancelled || len(res.Tokens) != 3 {
		t.Fatalf("reason %q, tokens %v; want cancelled after 3", res.StopReason, res.Tokens)
	}
	if res.Text != "ab\n" || strings.Join(pieces, "") != res.Text {
		t.Fatalf("text %q, streamed %q; want \"ab\\n\"", res.Text, pieces)
	}
	if len(m.history) != 3 {
		t.Fatalf("model ran %d positions after cancellation, want 3 (prompt + 2 fed back)", len(m.history))
	}

	// A context cancelled before the call stops before the prefill.
	m = newFake(1000, counting(10))
	res, err = generate(ctx, m, letters, []int32{0}, &Options{}, nil, nil)
	if !errors.Is(err, context.Canceled) || len(m.calls) != 0 || res.StopReason != StopCancelled {
		t.Fatalf("pre-cancelled: err %v, %d calls, reason %q", err, len(m.calls), res.StopReason)
	}
}

func TestGenerateContextFull(t *testing.T) {
	// A cache of 6 holds a 2-token prompt and 4 fed-back tokens; the 5th generated token
	// needs no forward pass, so 5 tokens come out.
	m := newFake(6, counting(10))
	res, err := generate(context.Background(), m, letters, []int32{0, 2}, &Options{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopContext || len(res.Tokens) != 5 {
		t.Fatalf("reason %q, %d tokens; want context_full, 5", res.StopReason, len(res.Tokens))
	}
}

func TestGeneratePromptErrors(t *testing.T) {
	tests := []struct {
		name   string
		cap    int
		prompt []int32
		opts   Options
		want   error
	}{
		{"empty prompt", 10, nil, Options{}, ErrEmptyPrompt},
		{"prompt longer than the cache", 3, []int32{0, 2, 3, 4}, Options{}, ErrPromptTooLong},
		{"negative max tokens", 10, []int32{0}, Options{MaxTokens: -1}, ErrOptions},
		{"bad sampling", 10, []int32{0}, Options{Sampling: sample.Options{TopP: 2}}, sample.ErrOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFake(tt.cap, counting(10))
			_, err := generate(context.Background(), m, letters, tt.prompt, &tt.opts, nil, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(m.calls) != 0 {
				t.Fatalf("model ran %d passes on a bad request", len(m.calls))
			}
		})
	}
}

func TestGenerateCallbackError(t *testing.T) {
	boom := errors.New("stdout closed")
	m := newFake(100, counting(10))
	res, err := generate(context.Background(), m, letters, []int32{0}, &Options{OnText: func(string) error { return boom }}, nil, nil)
	if !errors.Is(err, boom) || res.StopReason != StopError || len(res.Tokens) != 1 {
		t.Fatalf("err %v, reason %q, tokens %v; want the callback's error after 1 token", err, res.StopReason, res.Tokens)
	}
}

func TestGeneratePrefillBatches(t *testing.T) {
	m := newFake(100, counting(10))
	m.batch = 2
	prompt := []int32{0, 2, 3, 4, 5}
	if _, err := generate(context.Background(), m, letters, prompt, &Options{MaxTokens: 2}, nil, nil); err != nil {
		t.Fatal(err)
	}
	wantCalls := [][]int32{{0, 2}, {3, 4}, {5}, {6}}
	wantLogits := []bool{false, false, true, true}
	if !slices.EqualFunc(m.calls, wantCalls, slices.Equal) || !slices.Equal(m.logited, wantLogits) {
		t.Fatalf("calls %v (logits %v), want %v (%v)", m.calls, m.logited, wantCalls, wantLogits)
	}
}

func TestGenerateSampledIsSeeded(t *testing.T) {
	// With flat logits every token is possible; the same seed must give the same run.
	flat := func([]int32) int32 { return 0 }
	run := func(seed uint64) []int32 {
		m := newFake(100, flat)
		opts := Options{MaxTokens: 20, Sampling: sample.Options{Temperature: 50, Seed: seed}}
		res, err := generate(context.Background(), m, fakeCodec{pieces: letters.pieces}, []int32{0}, &opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.Tokens
	}
	if a, b := run(1), run(1); !slices.Equal(a, b) {
		t.Fatalf("same seed, different tokens: %v vs %v", a, b)
	}
	if a, b := run(1), run(2); slices.Equal(a, b) {
		t.Fatalf("seeds 1 and 2 gave the same 20 tokens %v", a)
	}
}

func TestResultRates(t *testing.T) {
	r := Result{PromptTokens: 100, PrefillDuration: 500_000_000, Tokens: make([]int32, 11), DecodeDuration: 2_000_000_000}
	if got := r.PrefillTokensPerSecond(); got != 200 {
		t.Fatalf("prefill rate %v, want 200", got)
	}
	if got := r.DecodeTokensPerSecond(); got != 5 {
		t.Fatalf("decode rate %v, want 5 (10 tokens after the first in 2 s)", got)
	}
	if got := (&Result{Tokens: []int32{1}}).DecodeTokensPerSecond(); got != 0 {
		t.Fatalf("decode rate of one token %v, want 0", got)
	}
}
