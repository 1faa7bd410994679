package earlyexit

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
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/speculate"
	"squeeze/runtime/tokenizer"
)

// devPrompts cuts n prompts of the given length from ../shared/eval/dev.txt, spread
// over the file, each starting with BOS.
func devPrompts(tb testing.TB, tok *tokenizer.Tokenizer, n, length int) [][]int32 {
	tb.Helper()
	all := tok.Encode(testmodel.DevText(tb), false)
	step := (len(all) - length) / n
	var out [][]int32
	for i := range n {
		p := append([]int32{tok.BOS()}, all[i*step:i*step+length-1]...)
		out = append(out, p)
	}
	return out
}

// TestPipelineGocodeShared checks on gocode-shared (4 blocks applied 3 times) that the
// sharing is found and that the pipeline emits plain greedy decoding's tokens for
// prompts of held-out Go code, and logs how well it speculates.
func TestPipelineGocodeShared(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes gocode-shared: not in -short")
	}
	m, f, tok := testmodel.Shared(t, "gocode-shared")
	g, err := BlockShare(f, m)
	if err != nil || g != 4 {
		t.Fatalf("BlockShare = %d, %v; want 4", g, err)
	}
	p := kernels.NewPool(2)
	defer p.Close()
	prompts := devPrompts(t, tok, 6, 512)
	var wants [][]int32
	for _, prompt := range prompts {
		wants = append(wants, plainGreedy(t, m, p, nil, prompt, 128))
	}
	for _, mode := range []string{"", "vocab", "vocab+ngram"} {
		var total PipelineStats
		for i, prompt := range prompts {
			o := PipelineOptions{}
			if mode != "" {
				o.Vocab = prompt
			}
			if mode == "vocab+ngram" {
				o.Drafter = speculate.NewNGram(nil, 0, 0)
			}
			got, st := pipelined(t, m, p, nil, prompt, 128, o)
			if !slices.Equal(got, wants[i]) {
				t.Fatalf("prompt %d: pipelined output differs from plain greedy at token %d", i, firstDiff(got, wants[i]))
			}
			total.add(st)
		}
		t.Logf("gocode-shared, 6 prompts x 128 tokens, pipeline options %q: %s", mode, total)
	}

	// The simple form: drafts from the exit after layer 4, verified by speculate.
	eng := &decode.Engine{Model: m, Tokenizer: tok, Pool: p}
	var drafted, accepted, verifications int
	for i, prompt := range prompts[:3] {
		res, err := eng.GenerateTokens(context.Background(), prompt, decode.Options{MaxTokens: 128,
			Speculate: speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{NewDrafter(Identity(4, m.Config.Dim))}, speculate.PolicyOptions{MinGain: -1})})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Tokens, wants[i][:len(res.Tokens)]) || len(res.Tokens) != 128 {
			t.Fatalf("prompt %d: draft-then-verify output differs from plain greedy at token %d", i, firstDiff(res.Tokens, wants[i]))
		}
		st := res.Speculation
		drafted, accepted, verifications = drafted+st.Drafted, accepted+st.Accepted, verifications+st.Verifications
	}
	t.Logf("draft-then-verify from the exit after layer 4, 3 prompts: %d drafted, %d accepted, %.2f tokens per verification", drafted, accepted, float64(accepted+verifications)/float64(max(1, verifications)))
}

func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func (s *PipelineStats) add(o PipelineStats) {
	s.Steps += o.Steps
	s.Rows += o.Rows
	s.Tokens += o.Tokens
	s.Launched += o.Launched
	s.Accepted += o.Accepted
	s.Drafted += o.Drafted
	s.DraftAccepted += o.DraftAccepted
	s.Flushed += o.Flushed
}

func (s PipelineStats) String() string {
	return fmt.Sprintf("%d tokens in %d steps (%.2f tokens/step, %.2f rows/step), %d exit guesses launched, %d accepted (%.0f%%), %d drafted, %d accepted, %d flushed",
		s.Tokens, s.Steps, float64(s.Tokens)/float64(s.Steps), float64(s.Rows)/float64(s.Steps),
		s.Launched, s.Accepted, 100*float64(s.Accepted)/float64(max(1, s.Launched)), s.Drafted, s.DraftAccepted, s.Flushed)
}

// BenchmarkPipelineGocodeShared compares decoding speeds on gocode-shared, 127 tokens
// after each of 4 prompts of 512 tokens of held-out code (prefill excluded), per pool
// size: plain greedy decoding (decode.Engine), the simple draft-then-verify form (early
// drafts from the exit after layer 4, verified by speculate's batched pass through
// decode.Engine) and the pipelined form (with and without refinement by deeper exits).
// The metric is decoded tokens per second.
func BenchmarkPipelineGocodeShared(b *testing.B) {
	m, _, tok := testmodel.Shared(b, "gocode-shared")
	prompts := devPrompts(b, tok, 4, 512)
	const n = 128
	for _, threads := range []int{1, 2} {
		p := kernels.NewPool(threads)
		defer p.Close()
		eng := &decode.Engine{Model: m, Tokenizer: tok, Pool: p}
		for _, mode := range []string{"plain", "draft-verify", "draft-verify-vocab", "ngram", "pipelined", "pipelined-norefine", "pipelined-vocab", "pipelined-vocab-ngram", "pipelined-fast-vocab"} {
			b.Run(fmt.Sprintf("threads=%d/%s", threads, mode), func(b *testing.B) {
				var dur time.Duration
				tokens := 0
				for b.Loop() {
					for _, prompt := range prompts {
						switch mode {
						case "plain", "draft-verify", "draft-verify-vocab", "ngram":
							o := decode.Options{MaxTokens: n, Cache: model.CacheF16}
							switch mode {
							case "draft-verify", "draft-verify-vocab":
								d := NewDrafter(Identity(4, m.Config.Dim))
								if mode == "draft-verify-vocab" {
									d.Vocab = prompt
								}
								o.Speculate = speculate.NewPolicy(speculate.ModeEarly, []speculate.Drafter{d}, speculate.PolicyOptions{})
							case "ngram":
								o.Speculate = speculate.NewPolicy(speculate.ModeNGram, []speculate.Drafter{speculate.NewNGram(nil, 0, 0)}, speculate.PolicyOptions{})
							}
							res, err := eng.GenerateTokens(context.Background(), prompt, o)
							if err != nil {
								b.Fatal(err)
							}
							dur += res.DecodeDuration
							tokens += len(res.Tokens) - 1
						default:
							o := PipelineOptions{NoRefine: mode == "pipelined-norefine", Fast: strings.Contains(mode, "fast")}
							if strings.Contains(mode, "vocab") {
								o.Vocab = prompt
							}
							if strings.HasSuffix(mode, "ngram") {
								o.Drafter = speculate.NewNGram(nil, 0, 0)
							}
							d, k := decodePipelined(b, m, p, prompt, n, o)
							dur += d
							tokens += k
						}
					}
				}
				b.ReportMetric(float64(tokens)/dur.Seconds(), "tokens/s")
			})
		}
	}
}

// decodePipelined prefills prompt and decodes n tokens with a Pipeline; it returns the
// time from the first token to the last and the number of tokens after the first.
func decodePipelined(b *testing.B, m *model.Model, p *kernels.Pool, prompt []int32, n int, o PipelineOptions) (time.Duration, int) {
	c, err := m.NewCache(len(prompt)+n, model.CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, m.Config.Vocab)
	if err := m.Forward(p, c, prompt, logits, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	pl, err := NewPipeline(speculate.Target{Model: m, Cache: c, Pool: p}, o)
	if err != nil {
		b.Fatal(err)
	}
	if err := pl.Start(append(slices.Clone(prompt), argmax(logits))); err != nil {
		b.Fatal(err)
	}
	for range n - 1 {
		if _, err := pl.Next(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start), n - 1
}
