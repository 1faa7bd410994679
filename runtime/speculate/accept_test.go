package speculate_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"squeeze/runtime/decode"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/speculate"
)

// devRun is what plain and speculative greedy decoding of the dev prompts measured.
type devRun struct {
	prompts, mismatches int
	plainTok, specTok   int
	plainDur, specDur   time.Duration
	stats               speculate.Stats
}

func (r *devRun) String() string {
	st := r.stats
	var src strings.Builder
	for _, s := range st.Sources {
		fmt.Fprintf(&src, "; %s: %d verifications, %d/%d accepted (rate %.2f), %.2f tokens per verification",
			s.Name, s.Verifications, s.Accepted, s.Drafted, s.AcceptanceRate(), s.TokensPerVerification())
	}
	return fmt.Sprintf("%d prompts, %d differ; drafted %d, accepted %d (rate %.2f), %d verification passes of %d passes, %.2f tokens per verification; decode %.1f tok/s plain, %.1f speculative (%.2fx)",
		r.prompts, r.mismatches, st.Drafted, st.Accepted, st.AcceptanceRate(), st.Verifications, st.Passes,
		st.TokensPerVerification(), rate(r.plainTok, r.plainDur), rate(r.specTok, r.specDur),
		rate(r.specTok, r.specDur)/rate(r.plainTok, r.plainDur)) + src.String()
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// runDev generates maxTokens tokens greedily for each of prompts dev prompts after the
// fixture's context, plainly and with the given speculation mode, on a session of the
// given budget, and compares the outputs token for token. Each prompt runs plain then
// speculative, so that both see the same machine load.
func runDev(t testing.TB, g *gocodeFixture, budget float64, mode speculate.Mode, prompts, maxTokens int) *devRun {
	return runPrompts(t, g, budget, mode, prompts, maxTokens, func(i int) []int32 { return g.prompt(i, 64) })
}

// runPrompts is runDev with the prompts prompt(0), prompt(1), ...
func runPrompts(t testing.TB, g *gocodeFixture, budget float64, mode speculate.Mode, prompts, maxTokens int, prompt func(int) []int32) *devRun {
	pool := kernels.NewPool(0)
	defer pool.Close()
	sess := g.session(t, pool, budget)
	e := &decode.Engine{Model: g.m, Tokenizer: g.tok, Pool: pool}
	// Indexed once and one policy for all prompts, as squeeze ask and serve run them.
	policy := speculate.NewPolicy(mode, g.drafters(), speculate.PolicyOptions{})
	run := &devRun{prompts: prompts}
	for i := range prompts {
		prompt := prompt(i)
		opts := decode.Options{MaxTokens: maxTokens, Prefix: sess, Cache: model.CacheF16}
		plain, err := e.GenerateTokens(context.Background(), prompt, opts)
		if err != nil {
			t.Fatal(err)
		}
		opts.Speculate = policy
		spec, err := e.GenerateTokens(context.Background(), prompt, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(plain.Tokens, spec.Tokens) {
			run.mismatches++
			at := 0
			for at < min(len(plain.Tokens), len(spec.Tokens)) && plain.Tokens[at] == spec.Tokens[at] {
				at++
			}
			t.Errorf("budget %v prompt %d: speculative output differs from plain greedy at token %d of %d/%d",
				budget, i, at, len(spec.Tokens), len(plain.Tokens))
		}
		run.plainTok += len(plain.Tokens) - 1
		run.specTok += len(spec.Tokens) - 1
		run.plainDur += plain.DecodeDuration
		run.specDur += spec.DecodeDuration
		st := spec.Speculation
		run.stats.Passes += st.Passes
		run.stats.Verifications += st.Verifications
		run.stats.Drafted += st.Drafted
		run.stats.Accepted += st.Accepted
		if run.stats.Sources == nil {
			run.stats.Sources = make([]speculate.SourceStats, len(st.Sources))
		}
		for i, src := range st.Sources {
			r := &run.stats.Sources[i]
			r.Name = src.Name
			r.Verifications += src.Verifications
			r.Drafted += src.Drafted
			r.Accepted += src.Accepted
		}
	}
	return run
}

// TestGreedyIdentityDev is the acceptance test of speculative decoding: for 50 code
// continuation prompts from dev.txt after a 4096-token fixed context (squeezed by
// precompute), 128 greedy tokens each, speculative output (policy auto over n-gram
// drafts and the context's early-exit predictor) equals plain greedy token for token, with a dense session and a squeezed one at
// budget 0.125. It logs the acceptance and speed it saw.
func TestGreedyIdentityDev(t *testing.T) {
	if testing.Short() {
		t.Skip("50 prompts x 128 tokens x 4 generations with gocode-22m: not in -short")
	}
	g := gocode(t)
	for _, budget := range []float64{1, 0.125} {
		t.Run(fmt.Sprintf("budget=%g", budget), func(t *testing.T) {
			r := runDev(t, g, budget, speculate.ModeAuto, 50, 128)
			t.Log(r)
		})
	}
}
