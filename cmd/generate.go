package cmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"

	"github.com/spf13/cobra"

	"squeeze/runtime/decode"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/sample"
)

// defaultModel is --model's default, relative to the current directory: the small demo
// model committed in the repository, so "squeeze generate" works from a checkout.
const defaultModel = "testdata/gocode-demo.gguf"

// generateOptions are the inputs of "squeeze generate", after flag parsing and
// configuration.
type generateOptions struct {
	Model         string
	Prompt        string // "-" means standard input
	MaxTokens     int
	Temp          float32
	TopK          int
	TopP          float32
	MinP          float32
	RepeatPenalty float32
	RepeatLastN   int
	Seed          int64 // -1 means a random seed
	Stop          []string
	KVCache       string
	CtxSize       int

	// From the global options.
	Threads   int
	HugePages bool
	JSON      bool
	Logger    *slog.Logger
}

// generateReport is the JSON object "squeeze generate --json" prints. Scripts depend on
// these names: add fields, never rename or remove one.
type generateReport struct {
	Model             string  `json:"model"`
	Text              string  `json:"text"`
	Tokens            []int32 `json:"tokens"`
	PromptTokens      int     `json:"prompt_tokens"`
	GeneratedTokens   int     `json:"generated_tokens"`
	StopReason        string  `json:"stop_reason"`
	PrefillTokensPerS float64 `json:"prefill_tokens_per_s"`
	DecodeTokensPerS  float64 `json:"decode_tokens_per_s"`
	PrefillMS         float64 `json:"prefill_ms"`
	DecodeMS          float64 `json:"decode_ms"`
	Seed              int64   `json:"seed"`
	Threads           int     `json:"threads"`
	KVCache           string  `json:"kv_cache"`
}

func newGenerateCommand(g *globalOptions, s streams, runF func(context.Context, *generateOptions, streams) error) *cobra.Command {
	opts := &generateOptions{}
	cmd := &cobra.Command{
		Use:   "generate [flags] {<prompt> | -}",
		Short: "Continue a prompt with a language model",
		Long: `Continue a prompt with a GGUF language model and stream the generated text to
stdout as it is produced (a final newline is added if the text lacks one).
The prompt is the argument, or standard input when the argument is "-". BOS is
added when the model's metadata asks for it.

Sampling follows llama.cpp: the repetition penalty, then top-k, top-p and min-p
over the model's probabilities, then the temperature. --temp 0 is greedy
decoding (deterministic; the truncation flags then have no effect). A given
--seed gives the same text for the same model, prompt and flags; the default,
-1, picks a random seed (reported by --json).

Generation stops at an end-of-generation token, a --stop string (not printed),
--max-tokens, a full context (--ctx-size), or Ctrl-C, which prints what was
generated and exits with status 130.

--model defaults to testdata/gocode-demo.gguf relative to the current
directory: the small demo model in squeeze's repository.

With --json nothing is streamed; one JSON object is printed at the end, with
the fields model, text, tokens (generated ids), prompt_tokens,
generated_tokens, stop_reason (eos, stop, max_tokens, context_full,
cancelled), prefill_tokens_per_s, decode_tokens_per_s, prefill_ms, decode_ms,
seed, threads, kv_cache.`,
		Example: `  # Greedy continuation with the demo model, from a checkout of squeeze
  $ squeeze generate --temp 0 "func main() {"

  # Another model, 64 tokens, sampled with a fixed seed, stop at the first blank line
  $ squeeze generate --model gocode-22m-q8_0.gguf -n 64 --seed 7 --stop $'\n\n' "package main"

  # Prompt from stdin, machine-readable result
  $ cat prompt.go | squeeze generate --json - | jq .decode_tokens_per_s`,
		Args: exactArgs(1, `generate takes one prompt argument (use "-" to read it from stdin)`),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Prompt = args[0]
			opts.Threads, opts.JSON, opts.Logger, opts.HugePages = g.Threads, g.JSON, g.logger, g.HugePages
			if runF != nil {
				return runF(cmd.Context(), opts, s)
			}
			return runGenerate(cmd.Context(), opts, s)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&opts.Model, "model", "m", defaultModel, "GGUF model `file`")
	f.IntVarP(&opts.MaxTokens, "max-tokens", "n", 128, "stop after this many generated tokens (0 = until the context is full)")
	f.Float32Var(&opts.Temp, "temp", 0.8, "sampling temperature (0 = greedy)")
	f.IntVar(&opts.TopK, "top-k", 40, "keep the K most likely tokens (0 = all)")
	f.Float32Var(&opts.TopP, "top-p", 0.95, "keep the most likely tokens up to this cumulative probability (1 = all)")
	f.Float32Var(&opts.MinP, "min-p", 0.05, "drop tokens less likely than this fraction of the most likely one (0 = none)")
	f.Float32Var(&opts.RepeatPenalty, "repeat-penalty", 1.0, "penalise recently seen tokens by this factor (1 = off)")
	f.IntVar(&opts.RepeatLastN, "repeat-last-n", 64, "window of recent tokens for --repeat-penalty")
	f.Int64Var(&opts.Seed, "seed", -1, "random seed (-1 = pick one at random)")
	f.StringArrayVar(&opts.Stop, "stop", nil, "stop before this `string` (repeatable)")
	f.StringVar(&opts.KVCache, "kv-cache", "f16", "KV cache storage type: f16 or f32")
	f.IntVar(&opts.CtxSize, "ctx-size", 0, "KV cache size in tokens, prompt included (0 = the model's context length)")
	return cmd
}

// samplingOptions translates and checks the sampling flags. A random seed is chosen
// here when --seed is -1, and recorded in opts.
func (opts *generateOptions) samplingOptions() (sample.Options, error) {
	if opts.Seed < -1 {
		return sample.Options{}, usageErrorf("--seed %d: want -1 (random) or a seed >= 0", opts.Seed)
	}
	if opts.Seed == -1 {
		opts.Seed = rand.Int64N(1 << 53) // exact in JSON numbers of any reader
	}
	if opts.RepeatLastN < 0 {
		return sample.Options{}, usageErrorf("--repeat-last-n %d: want >= 0", opts.RepeatLastN)
	}
	so := sample.Options{
		Temperature:   opts.Temp,
		TopK:          opts.TopK,
		TopP:          opts.TopP,
		MinP:          opts.MinP,
		RepeatPenalty: opts.RepeatPenalty,
		RepeatLastN:   opts.RepeatLastN,
		Seed:          uint64(opts.Seed),
	}
	if err := so.Validate(); err != nil {
		return so, &usageError{err}
	}
	return so, nil
}

// parseCacheType reads --kv-cache.
func parseCacheType(s string) (model.CacheType, error) {
	switch strings.ToLower(s) {
	case "f16":
		return model.CacheF16, nil
	case "f32":
		return model.CacheF32, nil
	}
	return 0, usageErrorf("--kv-cache %q: want f16 or f32", s)
}

// runGenerate loads the model, generates and prints the text (streamed) or the JSON
// report.
func runGenerate(ctx context.Context, opts *generateOptions, s streams) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	so, err := opts.samplingOptions()
	if err != nil {
		return err
	}
	cacheType, err := parseCacheType(opts.KVCache)
	if err != nil {
		return err
	}
	switch {
	case opts.MaxTokens < 0:
		return usageErrorf("--max-tokens %d: want >= 0", opts.MaxTokens)
	case opts.CtxSize < 0:
		return usageErrorf("--ctx-size %d: want >= 0", opts.CtxSize)
	case opts.Threads < 0:
		return usageErrorf("--threads %d: want >= 0", opts.Threads)
	}
	prompt := opts.Prompt
	if prompt == "-" {
		b, err := io.ReadAll(s.In)
		if err != nil {
			return fmt.Errorf("read prompt from stdin: %w", err)
		}
		prompt = string(b)
	}

	lm, err := loadModel(opts.Model, opts.HugePages, nil)
	if err != nil {
		return err
	}
	defer lm.File.Close()
	m, tok := lm.Model, lm.Tokenizer
	pool := kernels.NewPool(opts.Threads)
	defer pool.Close()
	c := &m.Config
	log.Info("model loaded", "path", opts.Model, "arch", c.Arch, "layers", c.Layers, "dim", c.Dim,
		"vocab", c.Vocab, "context", c.ContextLength, "threads", pool.Threads(), "kv_cache", cacheType)

	dopts := decode.Options{
		MaxTokens:  opts.MaxTokens,
		Stop:       opts.Stop,
		Sampling:   so,
		Cache:      cacheType,
		ContextLen: opts.CtxSize,
	}
	out := &textOutput{out: s.Out, json: opts.JSON}
	dopts.OnText = out.onText()
	engine := decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	res, genErr := engine.Generate(ctx, prompt, dopts)
	log.Info("generated", "prompt_tokens", res.PromptTokens, "prefill_tok_per_s", round1(res.PrefillTokensPerSecond()),
		"tokens", len(res.Tokens), "decode_tok_per_s", round1(res.DecodeTokensPerSecond()), "stop", res.StopReason)

	return out.finish(ctx, res, genErr, "generate", func() any {
		report := generateReport{
			Model:             opts.Model,
			Text:              res.Text,
			Tokens:            res.Tokens,
			PromptTokens:      res.PromptTokens,
			GeneratedTokens:   len(res.Tokens),
			StopReason:        string(res.StopReason),
			PrefillTokensPerS: round1(res.PrefillTokensPerSecond()),
			DecodeTokensPerS:  round1(res.DecodeTokensPerSecond()),
			PrefillMS:         float64(res.PrefillDuration.Microseconds()) / 1000,
			DecodeMS:          float64(res.DecodeDuration.Microseconds()) / 1000,
			Seed:              opts.Seed,
			Threads:           pool.Threads(),
			KVCache:           cacheType.String(),
		}
		if report.Tokens == nil {
			report.Tokens = []int32{}
		}
		return report
	})
}

// round1 rounds a rate to one decimal, enough for tokens per second.
func round1(x float64) float64 {
	return float64(int64(x*10+0.5)) / 10
}
