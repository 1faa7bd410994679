package decode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sample"
	"squeeze/runtime/speculate"
)

// oracleDrafter drafts the continuation of a known token sequence (a plain run's
// output after the prompt), with every wrong-th drafted token replaced by another one,
// and checks the Drafter contract: seq extends the previous call's and ends with the
// pending token.
type oracleDrafter struct {
	t      *testing.T
	want   []int32 // prompt + the plain run's tokens
	wrong  int     // corrupt every wrong-th drafted token (0: never)
	limit  int     // the most tokens per draft (0: as asked)
	vocab  int
	prev   []int32
	count  int
	resets int
	seen   []int // verified: drafted, accepted pairs
}

func (d *oracleDrafter) Name() string { return "ngram" }

func (d *oracleDrafter) Reset(_ *speculate.Target, prompt []int32) {
	d.prev = slices.Clone(prompt)
	d.resets++
}

func (d *oracleDrafter) Draft(dst, seq []int32, limit int) []int32 {
	if len(seq) <= len(d.prev) || !slices.Equal(seq[:len(d.prev)], d.prev) {
		d.t.Errorf("Draft: seq %v does not extend the previous %v", seq, d.prev)
	}
	d.prev = slices.Clone(seq)
	if !slices.Equal(seq, d.want[:min(len(seq), len(d.want))]) {
		d.t.Errorf("Draft: seq %v is not a prefix of plain decoding's %v", seq, d.want)
	}
	if d.limit > 0 {
		limit = min(limit, d.limit)
	}
	for i := len(seq); i < len(d.want) && i < len(seq)+limit; i++ {
		tok := d.want[i]
		d.count++
		if d.wrong > 0 && d.count%d.wrong == 0 {
			tok = (tok + 1) % int32(d.vocab)
		}
		dst = append(dst, tok)
	}
	return dst
}

func (d *oracleDrafter) Verified(drafted, accepted int) {
	d.seen = append(d.seen, drafted, accepted)
}

// TestSpeculateFakeIdentity runs the generation loop on the fake model with drafts that
// are right, partly wrong or always wrong, under every stop condition, and checks
// that tokens, text and stop reason equal plain decoding's and that the statistics add
// up.
func TestSpeculateFakeIdentity(t *testing.T) {
	periodic := func(h []int32) int32 { return int32(2 + (len(h)*len(h))%7) }
	cases := []struct {
		name string
		cap  int
		next func([]int32) int32
		opts Options
	}{
		{"max-tokens", 100, counting(10), Options{MaxTokens: 23}},
		{"eos", 100, func(h []int32) int32 {
			if len(h) == 17 {
				return 1
			}
			return periodic(h)
		}, Options{}},
		{"stop-string", 100, counting(10), Options{Stop: []string{"cd"}}},
		{"context-full", 19, periodic, Options{}},
		{"penalty", 100, periodic, Options{MaxTokens: 30, Sampling: sample.Options{RepeatPenalty: 1.3}}},
	}
	for _, tc := range cases {
		plainM := newFake(tc.cap, tc.next)
		plainOpts := tc.opts
		want, err := generate(context.Background(), plainM, letters, []int32{0, 2}, &plainOpts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		seq := append([]int32{0, 2}, want.Tokens...)
		for _, wrong := range []int{0, 1, 2, 3, 5} {
			for _, limit := range []int{1, 3, 8} {
				t.Run(fmt.Sprintf("%s/wrong=%d/limit=%d", tc.name, wrong, limit), func(t *testing.T) {
					m := newFake(tc.cap, tc.next)
					d := &oracleDrafter{t: t, want: seq, wrong: wrong, limit: limit, vocab: len(letters.pieces)}
					opts := tc.opts
					// MinGain -1: draft at every pass, whatever the statistics say.
					policy := speculate.NewPolicy(speculate.ModeAuto, []speculate.Drafter{d}, speculate.PolicyOptions{MinGain: -1})
					policy.Reset(nil, []int32{0, 2})
					got, err := generate(context.Background(), m, letters, []int32{0, 2}, &opts, policy, nil)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text || got.StopReason != want.StopReason {
						t.Fatalf("speculative %v %q %s\nplain       %v %q %s", got.Tokens, got.Text, got.StopReason,
							want.Tokens, want.Text, want.StopReason)
					}
					st := got.Speculation
					if wrong == 1 && st.Accepted != 0 {
						t.Errorf("every draft was wrong, yet %d tokens were accepted", st.Accepted)
					}
					if wrong == 0 && st.Drafted != st.Accepted {
						t.Errorf("every draft was right, yet %d of %d were accepted", st.Accepted, st.Drafted)
					}
					sum := 0
					for i := 0; i < len(d.seen); i += 2 {
						sum += d.seen[i+1]
					}
					if sum != st.Accepted || len(d.seen)/2 != st.Verifications || st.Sources[0].Accepted != st.Accepted {
						t.Errorf("stats %+v disagree with the drafter's outcomes %v", st, d.seen)
					}
					// Every committed token was chosen by one pass: a pass commits its
					// accepted drafts and one more, unless generation stopped inside it.
					if st.Passes+st.Accepted < len(got.Tokens)-1 || st.Passes > len(got.Tokens) {
						t.Errorf("%d passes with %d accepted drafts for %d tokens", st.Passes, st.Accepted, len(got.Tokens))
					}
				})
			}
		}
	}
}

// TestSpeculateOffWithTemperature checks that sampling with a temperature never drafts,
// and that a mode without matching drafters leaves the policy inactive.
func TestSpeculateOffWithTemperature(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 7})
	prompt := e.Tokenizer.Encode("abc", true)
	d := &oracleDrafter{t: t, want: prompt, vocab: e.Model.Config.Vocab}
	policy := speculate.NewPolicy(speculate.ModeAuto, []speculate.Drafter{d}, speculate.PolicyOptions{MinGain: -1})
	res, err := e.GenerateTokens(context.Background(), prompt, Options{
		MaxTokens: 10, Sampling: sample.Options{Temperature: 0.7}, Speculate: policy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Speculation.Verifications != 0 || d.resets != 0 || res.Speculation.Passes != len(res.Tokens)-1 {
		t.Fatalf("sampling with temperature 0.7: %+v, drafter reset %d times", res.Speculation, d.resets)
	}
	if speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{d}, speculate.PolicyOptions{}).Active() {
		t.Fatal("mode early is active over an ngram drafter")
	}
}

// TestSpeculateSynthetic generates greedily with a random-weight model, with and
// without a Prefix, plainly and with n-gram, oracle and random drafts, and checks the
// tokens are identical.
func TestSpeculateSynthetic(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 5, Weights: gguf.TypeF16, Context: 512})
	vocab := e.Model.Config.Vocab
	prompt := e.Tokenizer.Encode("the cat sat on the mat and the cat", true)
	for _, withPrefix := range []bool{false, true} {
		var prefix model.Prefix
		if withPrefix {
			prefix = cachePrefix(t, e, 100)
		}
		want, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 80, Prefix: prefix, Cache: model.CacheF16})
		if err != nil {
			t.Fatal(err)
		}
		seq := append(slices.Clone(prompt), want.Tokens...)
		drafters := map[string]speculate.Drafter{
			"ngram":  speculate.NewNGram(nil, 1, 3),
			"oracle": &oracleDrafter{t: t, want: seq, wrong: 4, vocab: vocab},
			"random": &randomDrafter{r: rand.New(rand.NewPCG(1, 2)), vocab: vocab},
		}
		for name, d := range drafters {
			t.Run(fmt.Sprintf("prefix=%v/%s", withPrefix, name), func(t *testing.T) {
				got, err := e.GenerateTokens(context.Background(), prompt, Options{
					MaxTokens: 80, Prefix: prefix, Cache: model.CacheF16,
					Speculate: speculate.NewPolicy(speculate.ModeAuto, []speculate.Drafter{d}, speculate.PolicyOptions{MinGain: -1}),
				})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Tokens, want.Tokens) {
					t.Fatalf("speculative %v\nplain       %v", got.Tokens, want.Tokens)
				}
				st := got.Speculation
				t.Logf("%d passes, %d verifications, %d/%d drafts accepted", st.Passes, st.Verifications, st.Accepted, st.Drafted)
				if st.Verifications == 0 {
					t.Errorf("no draft was verified")
				}
			})
		}
	}
}

// randomDrafter drafts random tokens: nearly all are rejected.
type randomDrafter struct {
	r     *rand.Rand
	vocab int
}

func (d *randomDrafter) Name() string                         { return "ngram" }
func (d *randomDrafter) Reset(_ *speculate.Target, _ []int32) {}
func (d *randomDrafter) Draft(dst, _ []int32, limit int) []int32 {
	for range 1 + d.r.IntN(limit) {
		dst = append(dst, int32(d.r.IntN(d.vocab)))
	}
	return dst
}

// cachePrefix is a model.Prefix over n random tokens prefilled in a cache of their own:
// it attends to every key exactly, whatever the batch.
func cachePrefix(t *testing.T, e *Engine, n int) model.Prefix {
	t.Helper()
	c, err := e.Model.NewCache(n, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(r.IntN(e.Model.Config.Vocab))
	}
	if err := e.Model.Forward(e.Pool, c, toks, nil, nil); err != nil {
		t.Fatal(err)
	}
	return &densePrefix{m: e.Model, c: c}
}

// densePrefix attends to a prefilled cache's keys, token by token (so any batch gives
// each token the result of a batch of one).
type densePrefix struct {
	m *model.Model
	c *model.Cache
}

func (p *densePrefix) Len() int { return p.c.Len() }

func (p *densePrefix) Attend(layer int, q []float32, n int, out, lse []float32) {
	cfg := &p.m.Config
	hd, group := cfg.HeadDim, cfg.Heads/cfg.KVHeads
	keys := make([]float32, p.c.Len()*hd)
	vals := make([]float32, p.c.Len()*hd)
	scores := make([]float32, p.c.Len())
	for i := range n {
		for h := range cfg.Heads {
			if _, err := p.c.Keys(layer, h/group, 0, p.c.Len(), keys); err != nil {
				panic(err)
			}
			if _, err := p.c.Values(layer, h/group, 0, p.c.Len(), vals); err != nil {
				panic(err)
			}
			qv := q[(i*cfg.Heads+h)*hd:][:hd]
			for j := range scores {
				scores[j] = kernels.Dot(qv, keys[j*hd:(j+1)*hd])
			}
			lse[i*cfg.Heads+h] = kernels.Softmax(scores)
			o := out[(i*cfg.Heads+h)*hd:][:hd]
			clear(o)
			for j, w := range scores {
				kernels.Axpy(w, vals[j*hd:(j+1)*hd], o)
			}
		}
	}
}

// TestVerifyRollback runs a verification pass through the engine's model adapter,
// rejects part of the draft, and checks the cache length and that the next pass's
// logits equal those of a fresh cache that never saw the rejected tokens.
func TestVerifyRollback(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 6, Weights: gguf.TypeF16})
	vocab := e.Model.Config.Vocab
	prompt := e.Tokenizer.Encode("one two three", true)
	draft := []int32{5, 9, 13, 17, 21}
	for keep := range len(draft) + 1 {
		c, err := e.Model.NewCache(64, model.CacheF16)
		if err != nil {
			t.Fatal(err)
		}
		l := &modelLM{m: e.Model, c: c, p: e.Pool}
		if err := l.forward(prompt, nil); err != nil {
			t.Fatal(err)
		}
		all := make([]float32, (1+len(draft))*vocab)
		if err := l.verify(append([]int32{3}, draft...), all); err != nil {
			t.Fatal(err)
		}
		if err := l.truncate(len(prompt) + 1 + keep); err != nil {
			t.Fatal(err)
		}
		if c.Len() != len(prompt)+1+keep {
			t.Fatalf("keep %d: cache length %d, want %d", keep, c.Len(), len(prompt)+1+keep)
		}
		got := make([]float32, vocab)
		if err := l.step(7, got); err != nil {
			t.Fatal(err)
		}
		seq := append([]int32{3}, draft[:keep]...)
		if want := stepped(t, e, prompt, append(seq, 7)); !slices.Equal(got, want) {
			t.Errorf("keep %d: logits after the rollback differ from a fresh cache's", keep)
		}
		// Row keep of the verification pass made the same prediction before the
		// rollback as one-token passes do.
		rowWant := stepped(t, e, prompt, seq)
		if !slices.Equal(all[keep*vocab:(keep+1)*vocab], rowWant) {
			t.Errorf("keep %d: verification row %d differs from a one-token pass", keep, keep)
		}
	}
}

// stepped prefills prompt into a fresh cache, runs tokens one pass each, and returns the
// last pass's logits.
func stepped(t *testing.T, e *Engine, prompt, tokens []int32) []float32 {
	t.Helper()
	c, err := e.Model.NewCache(64, model.CacheF16)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Model.Forward(e.Pool, c, prompt, nil, nil); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, e.Model.Config.Vocab)
	for _, tok := range tokens {
		if err := e.Model.Forward(e.Pool, c, []int32{tok}, logits, nil); err != nil {
			t.Fatal(err)
		}
	}
	return logits
}

// observingDrafter is an oracle drafter that also observes layer 1 of every decoding
// pass and records the passes' sizes.
type observingDrafter struct {
	oracleDrafter
	dim    int
	passes []int // tokens of each observed pass
}

func (d *observingDrafter) ObservedLayer() int { return 1 }
func (d *observingDrafter) Observe(s *model.LayerState) {
	if s.Layer != 1 || len(s.Hidden) != s.Tokens*d.dim {
		d.t.Errorf("observed layer %d with %d tokens", s.Layer, s.Tokens)
	}
	d.passes = append(d.passes, s.Tokens)
}

// TestSpeculateObserver checks that an Observer sees every decoding pass once (plain
// passes of one token, verification passes of the pending token and the draft) and
// not the prompt's prefill.
func TestSpeculateObserver(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 8, Layers: 3})
	prompt := e.Tokenizer.Encode("hello there", true)
	want, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 30})
	if err != nil {
		t.Fatal(err)
	}
	d := &observingDrafter{oracleDrafter: oracleDrafter{t: t, want: append(slices.Clone(prompt), want.Tokens...), wrong: 3, limit: 4, vocab: e.Model.Config.Vocab}, dim: e.Model.Config.Dim}
	got, err := e.GenerateTokens(context.Background(), prompt, Options{
		MaxTokens: 30, Speculate: speculate.NewPolicy(speculate.ModeAuto, []speculate.Drafter{d}, speculate.PolicyOptions{MinGain: -1}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tokens, want.Tokens) {
		t.Fatalf("tokens %v, plain %v", got.Tokens, want.Tokens)
	}
	st := got.Speculation
	rows := 0
	for _, n := range d.passes {
		rows += n
	}
	if len(d.passes) != st.Passes || rows != st.Passes+st.Drafted {
		t.Errorf("observed %d passes of %d rows; the generation made %d passes with %d drafted tokens",
			len(d.passes), rows, st.Passes, st.Drafted)
	}
}
