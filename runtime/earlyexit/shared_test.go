package earlyexit

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

// openShared loads a model of ../shared/models and its tokenizer (the test skips
// without them).
func openShared(tb testing.TB, name string) (*model.Model, *gguf.File, *tokenizer.Tokenizer) {
	tb.Helper()
	f, err := gguf.Open(testfiles.Shared(tb, "models", name, name+".gguf"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	m, err := model.Load(f)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		tb.Fatal(err)
	}
	return m, f, tok
}

// devPrompts cuts n prompts of the given length from ../shared/eval/dev.txt, spread
// over the file, each starting with BOS.
func devPrompts(tb testing.TB, tok *tokenizer.Tokenizer, n, length int) [][]int32 {
	tb.Helper()
	text, err := os.ReadFile(testfiles.Shared(tb, "eval", "dev.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	all := tok.Encode(string(text), false)
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
	m, f, tok := openShared(t, "gocode-shared")
	g, err := BlockShare(f, m)
	if err != nil || g != 4 {
		t.Fatalf("BlockShare = %d, %v; want 4", g, err)
	}
	p := kernels.NewPool(2)
	defer p.Close()
	var total PipelineStats
	for i, prompt := range devPrompts(t, tok, 6, 512) {
		want := plainGreedy(t, m, p, nil, prompt, 128)
		got, st := pipelined(t, m, p, nil, prompt, 128, PipelineOptions{})
		if !slices.Equal(got, want) {
			t.Fatalf("prompt %d: pipelined output differs from plain greedy at token %d", i, firstDiff(got, want))
		}
		total.add(st)
	}
	t.Logf("gocode-shared, 6 prompts x 128 tokens: %s", total)
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
	s.Flushed += o.Flushed
}

func (s PipelineStats) String() string {
	return fmt.Sprintf("%d tokens in %d steps (%.2f tokens/step, %.2f rows/step), %d guesses launched, %d accepted (%.0f%%), %d flushed",
		s.Tokens, s.Steps, float64(s.Tokens)/float64(s.Steps), float64(s.Rows)/float64(s.Steps),
		s.Launched, s.Accepted, 100*float64(s.Accepted)/float64(max(1, s.Launched)), s.Flushed)
}

// BenchmarkPipelineGocodeShared compares decoding speed on gocode-shared: plain greedy
// (one Forward per token) against the pipelined form, 128 tokens after a 512-token
// prompt of held-out code, 2 threads. Each iteration decodes every prompt; the metric
// is tokens/s over the decode phase (prefill excluded).
func BenchmarkPipelineGocodeShared(b *testing.B) {
	m, _, tok := openShared(b, "gocode-shared")
	p := kernels.NewPool(2)
	defer p.Close()
	prompts := devPrompts(b, tok, 4, 512)
	const n = 128
	for _, mode := range []string{"plain", "pipelined", "pipelined-norefine"} {
		b.Run(mode, func(b *testing.B) {
			var dur time.Duration
			tokens := 0
			for b.Loop() {
				for _, prompt := range prompts {
					c, err := m.NewCache(len(prompt)+n, model.CacheF16)
					if err != nil {
						b.Fatal(err)
					}
					logits := make([]float32, m.Config.Vocab)
					if err := m.Forward(p, c, prompt, logits, nil); err != nil {
						b.Fatal(err)
					}
					tok := argmax(logits)
					start := time.Now()
					switch mode {
					case "plain":
						for range n - 1 {
							if err := m.Forward(p, c, []int32{tok}, logits, nil); err != nil {
								b.Fatal(err)
							}
							tok = argmax(logits)
						}
					default:
						pl, err := NewPipeline(targetOf(m, c, p), PipelineOptions{NoRefine: mode == "pipelined-norefine"})
						if err != nil {
							b.Fatal(err)
						}
						if err := pl.Start(tok); err != nil {
							b.Fatal(err)
						}
						for range n - 1 {
							if tok, err = pl.Next(); err != nil {
								b.Fatal(err)
							}
						}
					}
					dur += time.Since(start)
					tokens += n - 1
				}
			}
			b.ReportMetric(float64(tokens)/dur.Seconds(), "tokens/s")
		})
	}
}
