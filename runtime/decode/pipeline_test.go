package decode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"squeeze/runtime/earlyexit"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/sample"
	"squeeze/runtime/speculate"
)

// fakeStepper steps a fakeLM one token at a time, as a Pipeline steps a model: Start
// takes the pending token, Next runs it and returns its successor.
type fakeStepper struct {
	m       *fakeLM
	pending int32
	started [][]int32
	nexts   int
}

func (s *fakeStepper) Start(seq []int32) error {
	s.started = append(s.started, slices.Clone(seq))
	s.pending = seq[len(seq)-1]
	return nil
}

func (s *fakeStepper) Next() (int32, error) {
	s.nexts++
	logits := make([]float32, s.m.nvocab)
	if err := s.m.forward([]int32{s.pending}, logits); err != nil {
		return 0, err
	}
	s.pending = int32(slices.Index(logits, 10))
	return s.pending, nil
}

// TestGeneratePipelineFake checks that a Stepper's tokens end generation as plain
// decoding's do (token limit, EOG, stop strings, full cache, cancellation), with the
// same tokens and text, and that it is started once with the prompt and first token.
func TestGeneratePipelineFake(t *testing.T) {
	script := []int32{2, 3, 4, 5, 1, 6}
	tests := []struct {
		name   string
		cap    int
		next   func([]int32) int32
		opts   Options
		cancel int // cancel after this many pieces of text (0: never)
	}{
		{"max tokens", 100, counting(10), Options{MaxTokens: 6}, 0},
		{"one token", 100, counting(10), Options{MaxTokens: 1}, 0},
		{"eog", 100, func(h []int32) int32 { return script[len(h)-1] }, Options{MaxTokens: 10}, 0},
		{"stop string", 100, counting(10), Options{MaxTokens: 9, Stop: []string{"d\ne"}}, 0},
		{"context full", 6, counting(10), Options{}, 0},
		{"cancelled", 1000, counting(10), Options{}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := func(pipe bool) (Result, error, *fakeStepper) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				m := newFake(tt.cap, tt.next)
				opts := tt.opts
				pieces := 0
				opts.OnText = func(string) error {
					if pieces++; pieces == tt.cancel {
						cancel()
					}
					return nil
				}
				var st *fakeStepper
				var stepper Stepper
				if pipe {
					st = &fakeStepper{m: m}
					stepper = st
				}
				res, err := generate(ctx, m, letters, []int32{0, 2}, &opts, nil, stepper)
				return res, err, st
			}
			want, wantErr, _ := run(false)
			got, gotErr, st := run(true)
			if !errors.Is(gotErr, wantErr) && gotErr != wantErr {
				t.Fatalf("err %v, plain decoding's %v", gotErr, wantErr)
			}
			if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text || got.StopReason != want.StopReason {
				t.Fatalf("pipeline: %v %q %q\nplain:    %v %q %q", got.Tokens, got.Text, got.StopReason, want.Tokens, want.Text, want.StopReason)
			}
			if len(got.Tokens) > 1 && (len(st.started) != 1 || !slices.Equal(st.started[0], []int32{0, 2, got.Tokens[0]})) {
				t.Fatalf("started with %v, want once with the prompt and %d", st.started, got.Tokens[0])
			}
			if st.nexts != len(got.Tokens)-1 {
				t.Fatalf("Next called %d times for %d tokens", st.nexts, len(got.Tokens))
			}
		})
	}
}

// TestGeneratePipelineSynthetic generates with earlyexit's pipeline on a random-weight
// parameter-shared model, with and without a Prefix and n-gram drafts, and checks the
// tokens are plain greedy decoding's; a repetition penalty bypasses the pipeline.
func TestGeneratePipelineSynthetic(t *testing.T) {
	e := syntheticEngine(t, modeltest.Spec{Seed: 7, Weights: gguf.TypeF16, Layers: 6, BlockShare: 2, Context: 512})
	prompt := e.Tokenizer.Encode("the cat sat on the mat and the cat", true)
	for _, withPrefix := range []bool{false, true} {
		var prefix model.Prefix
		if withPrefix {
			prefix = cachePrefix(t, e, 100)
		}
		want, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 60, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		for _, ngram := range []bool{false, true} {
			t.Run(fmt.Sprintf("prefix=%v/ngram=%v", withPrefix, ngram), func(t *testing.T) {
				var pl *earlyexit.Pipeline
				opts := Options{MaxTokens: 60, Prefix: prefix, Pipeline: func(tg speculate.Target) (Stepper, error) {
					o := earlyexit.PipelineOptions{Vocab: prompt}
					if ngram {
						o.Drafter = speculate.NewNGram(nil, 0, 0)
					}
					var err error
					pl, err = earlyexit.NewPipeline(tg, o)
					return pl, err
				}}
				got, err := e.GenerateTokens(context.Background(), prompt, opts)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Tokens, want.Tokens) {
					t.Fatalf("pipelined %v\nplain     %v", got.Tokens, want.Tokens)
				}
				st := pl.Stats()
				t.Logf("%+v", st)
				if st.Launched == 0 || st.Tokens != len(got.Tokens)-1 {
					t.Errorf("stats %+v: want launched guesses and %d tokens", st, len(got.Tokens)-1)
				}
			})
		}
	}
	t.Run("penalty", func(t *testing.T) {
		so := sample.Options{RepeatPenalty: 1.3}
		want, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 20, Sampling: so})
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 20, Sampling: so,
			Pipeline: func(speculate.Target) (Stepper, error) { return nil, errors.New("pipeline used with a penalty") }})
		if err != nil || !slices.Equal(got.Tokens, want.Tokens) {
			t.Fatalf("with a penalty: %v, %v; want %v", got.Tokens, err, want.Tokens)
		}
	})
}

// TestGeneratePipelineGocodeShared checks on gocode-shared that generation through the
// pipeline (with n-gram drafts) gives plain greedy decoding's tokens on held-out code.
func TestGeneratePipelineGocodeShared(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes gocode-shared: not in -short")
	}
	m, _, tok := testmodel.Shared(t, "gocode-shared")
	e := &Engine{Model: m, Tokenizer: tok}
	all := tok.Encode(testmodel.DevText(t), false)
	for i := range 3 {
		lo := i * (len(all) - 400) / 3
		prompt := append([]int32{tok.BOS()}, all[lo:lo+399]...)
		want, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 96})
		if err != nil {
			t.Fatal(err)
		}
		var pl *earlyexit.Pipeline
		got, err := e.GenerateTokens(context.Background(), prompt, Options{MaxTokens: 96,
			Pipeline: func(tg speculate.Target) (Stepper, error) {
				var err error
				pl, err = earlyexit.NewPipeline(tg, earlyexit.PipelineOptions{Vocab: prompt, Drafter: speculate.NewNGram(nil, 0, 0)})
				return pl, err
			}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Tokens, want.Tokens) {
			t.Fatalf("prompt %d: pipelined %v\nplain %v", i, got.Tokens, want.Tokens)
		}
		t.Logf("prompt %d: %.1f tok/s plain, %.1f pipelined; %+v", i, want.DecodeTokensPerSecond(), got.DecodeTokensPerSecond(), pl.Stats())
	}
}

// BenchmarkGeneratePipelineGocodeShared compares decoding through Generate on
// gocode-shared, 127 tokens after each of 4 prompts of 512 tokens of held-out code
// (prefill excluded), on 2 threads: plain greedy decoding and Options.Pipeline
// (earlyexit's pipeline with the prompt as its vocabulary, with and without n-gram
// drafts, and with MinAccept 0.5 as squeeze ask runs it). Each iteration decodes every
// prompt in every mode, interleaved, so that the modes share the machine's conditions;
// the metrics are each mode's tokens per second, the pipeline's speed-up over plain
// decoding and its tokens per step (a step reads the 4 shared blocks once; plain
// decoding reads them 3 times per token), and for what ask uses the rows and depths
// (earlyexit.PipelineStats) per token, the counts that earlyexit's
// BenchmarkSharedStepCost prices.
func BenchmarkGeneratePipelineGocodeShared(b *testing.B) {
	m, _, tok := testmodel.Shared(b, "gocode-shared")
	all := tok.Encode(testmodel.DevText(b), false)
	var prompts [][]int32
	for i := range 4 {
		lo := i * (len(all) - 512) / 4
		prompts = append(prompts, append([]int32{tok.BOS()}, all[lo:lo+511]...))
	}
	pool := kernels.NewPool(2)
	defer pool.Close()
	e := &Engine{Model: m, Tokenizer: tok, Pool: pool}
	modes := []string{"plain", "pipeline", "pipeline-ngram", "pipeline-ngram-min"}
	var dur [4]time.Duration
	var tokens, steps, rows, depths [4]int
	for b.Loop() {
		for _, prompt := range prompts {
			for k, mode := range modes {
				o := Options{MaxTokens: 128, Cache: model.CacheF16}
				var pl *earlyexit.Pipeline
				if mode != "plain" {
					o.Pipeline = func(t speculate.Target) (Stepper, error) {
						po := earlyexit.PipelineOptions{Vocab: prompt}
						if mode != "pipeline" {
							po.Drafter = speculate.NewNGram(nil, 0, 0)
						}
						if mode == "pipeline-ngram-min" {
							po.MinAccept = 0.5
						}
						var err error
						pl, err = earlyexit.NewPipeline(t, po)
						return pl, err
					}
				}
				res, err := e.GenerateTokens(context.Background(), prompt, o)
				if err != nil {
					b.Fatal(err)
				}
				dur[k] += res.DecodeDuration
				tokens[k] += len(res.Tokens) - 1
				if pl != nil {
					st := pl.Stats()
					steps[k] += st.Steps
					rows[k] += st.Rows
					depths[k] += st.Depths
				}
			}
		}
	}
	for k, mode := range modes {
		b.ReportMetric(float64(tokens[k])/dur[k].Seconds(), mode+"-tok/s")
		if k > 0 {
			b.ReportMetric(float64(tokens[k])/dur[k].Seconds()/(float64(tokens[0])/dur[0].Seconds()), mode+"-x")
			b.ReportMetric(float64(tokens[k])/float64(steps[k]), mode+"-tok/step")
		}
		if mode == "pipeline-ngram-min" {
			b.ReportMetric(float64(rows[k])/float64(tokens[k]), mode+"-rows/tok")
			b.ReportMetric(float64(depths[k])/float64(tokens[k]), mode+"-depths/tok")
		}
	}
}
