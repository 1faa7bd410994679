package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"squeeze/format"
	"squeeze/precompute"
	"squeeze/precompute/eval"
	"squeeze/runtime/kernels"
)

// evalOptions are the inputs of "squeeze eval", after flag parsing and configuration.
type evalOptions struct {
	Model   string
	Text    string
	Windows int
	Context int
	Query   int
	Budgets string
	Modes   string
	Block   int
	Levels  string
	Window  int
	Sink    int
	Seed    uint64
	KVCache string
	// KV encodings evaluated and their quantization settings.
	KV string
	kvQuantFlags

	// From the global options.
	Threads   int
	HugePages bool
	JSON      bool
}

func newEvalCommand(g *globalOptions, s streams) *cobra.Command {
	opts := &evalOptions{}
	cmd := &cobra.Command{
		Use:   "eval [flags] --text CORPUS",
		Short: "Measure squeezed attention's quality against dense attention on a text",
		Long: `Measure what squeezed attention costs in quality, with the fixed-context
continuation protocol: the text is tokenized (BOS first) and cut into consecutive
windows of --context + --query tokens (the first --windows of them); in each, the
first --context tokens are a fixed context (its first token BOS), squeezed exactly
as "squeeze precompute" would (same defaults, the calibration ladder extended by
every evaluated budget), and the next --query tokens are scored: every query token
but the first, predicted from everything before it.

For each mode and budget the result reports the squeezed run's perplexity, the
dense reference's (one f32-cache pass over the window), their ratio, the KL
divergence KL(dense || squeezed) and the top-1 agreement averaged over the scored
positions, the realized budget ((keys read + centroids scored) / keys) and the
attention mass: the share of the dense softmax mass over the context that the keys
read hold, averaged over layers, query heads and query tokens.

Modes: prefill runs the query as one block (one lookup per KV head and layer for
the whole query, as "squeeze ask" prefills a query); decode runs it token by token
(a fresh lookup per token, as generated tokens are, which is what the thresholds
are calibrated for).

--kv lists the KV encodings to evaluate (f16 as precompute stores rows by
default; nuq2-4, nf2-4, int2-4 quantized as "precompute --kv" would, with
--outliers, --qnorm, --post-rope, --per-token-keys, --kv-weighting and
--kv-rounding; the
sensitivities are each window's context's): each at every mode and budget, so
budget 1 measures the encoding alone and smaller budgets quantization and
squeezing together.

A table goes to stdout, progress lines to stderr; with --json one object per line
per configuration with the fields kv, outliers, qnorm, post_rope,
per_token_keys, rounding, bits_per_element, mode, budget, windows, tokens, ppl,
ppl_dense, ppl_ratio, kl, top1, realized_budget, key_fraction,
attention_mass.`,
		Example: `  # 40 windows of 4096 + 256 tokens of a held-out corpus
  $ squeeze eval --model gocode-22m.gguf --text dev.txt --windows 40 --json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("eval takes no arguments (the corpus is --text), got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Threads, opts.JSON, opts.HugePages = g.Threads, g.JSON, g.HugePages
			return runEval(cmd.Context(), opts, s)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&opts.Model, "model", "m", defaultModel, "GGUF model `file`")
	f.StringVar(&opts.Text, "text", "", "corpus `file` (required)")
	f.IntVar(&opts.Windows, "windows", 0, "windows to evaluate (0 = all the text holds)")
	f.IntVar(&opts.Context, "context", eval.DefaultContext, "fixed context tokens per window")
	f.IntVar(&opts.Query, "query", eval.DefaultQuery, "query tokens per window")
	f.StringVar(&opts.Budgets, "budgets", "1,0.5,0.25,0.125", "budgets to evaluate, comma-separated fractions in (0, 1]")
	f.StringVar(&opts.Modes, "mode", "prefill", "query modes, comma-separated: prefill, decode")
	f.IntVar(&opts.Block, "block", 0, "prefill mode: query tokens per block, each with its own lookup (0 = the whole query)")
	f.StringVar(&opts.Levels, "levels", "0.01,0.05", "tree levels: clusters as fractions of the keys, coarse to fine, comma-separated")
	f.IntVar(&opts.Window, "window", precompute.DefaultWindow, "last context tokens always attended; their queries calibrate the thresholds")
	f.IntVar(&opts.Sink, "sink", precompute.DefaultSink, "first context tokens always attended (0 = none)")
	f.Uint64Var(&opts.Seed, "seed", 0, "k-means seed")
	f.StringVar(&opts.KVCache, "kv-cache", "f16", "KV cache type of the context's prefill, as precompute's: f16 or f32")
	f.StringVar(&opts.KV, "kv", format.KVEncodingF16, "KV encodings to evaluate, comma-separated: f16, nuq2-4, nf2-4, int2-4")
	opts.kvQuantFlags.add(f)
	return cmd
}

// parseBudgets reads --budgets.
func parseBudgets(s string) ([]float64, error) {
	var out []float64
	for part := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(v > 0 && v <= 1) {
			return nil, usageErrorf("--budgets %q: want fractions in (0, 1], comma-separated", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseModes reads --mode.
func parseModes(s string) ([]eval.Mode, error) {
	var out []eval.Mode
	for part := range strings.SplitSeq(s, ",") {
		switch md := eval.Mode(strings.TrimSpace(part)); md {
		case eval.ModePrefill, eval.ModeDecode:
			out = append(out, md)
		default:
			return nil, usageErrorf("--mode %q: want prefill, decode or both, comma-separated", s)
		}
	}
	return out, nil
}

// parseKV reads --kv and the quantization flags.
func parseKV(opts *evalOptions) ([]precompute.KVOptions, error) {
	var out []precompute.KVOptions
	encs := strings.Split(opts.KV, ",")
	for _, part := range encs {
		kv, err := opts.options(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	if err := opts.checkQuantized(encs...); err != nil {
		return nil, err
	}
	return out, nil
}

// runEval checks the options, loads the model and the corpus, evaluates and prints the
// rows.
func runEval(ctx context.Context, opts *evalOptions, s streams) error {
	budgets, err := parseBudgets(opts.Budgets)
	if err != nil {
		return err
	}
	modes, err := parseModes(opts.Modes)
	if err != nil {
		return err
	}
	levels, err := parseLevels(opts.Levels)
	if err != nil {
		return err
	}
	cacheType, err := parseCacheType(opts.KVCache)
	if err != nil {
		return err
	}
	kvs, err := parseKV(opts)
	if err != nil {
		return err
	}
	switch {
	case opts.Text == "":
		return usageErrorf("--text is required")
	case opts.Windows < 0:
		return usageErrorf("--windows %d: want >= 0", opts.Windows)
	case opts.Block < 0:
		return usageErrorf("--block %d: want >= 0", opts.Block)
	case opts.Context < 4:
		return usageErrorf("--context %d: want >= 4", opts.Context)
	case opts.Query < 2:
		return usageErrorf("--query %d: want >= 2", opts.Query)
	case opts.Window < 1:
		return usageErrorf("--window %d: want >= 1", opts.Window)
	case opts.Sink < 0:
		return usageErrorf("--sink %d: want >= 0", opts.Sink)
	case opts.Threads < 0:
		return usageErrorf("--threads %d: want >= 0", opts.Threads)
	}
	text, err := os.ReadFile(opts.Text)
	if err != nil {
		return fmt.Errorf("read the corpus: %w", err)
	}
	lm, err := loadModel(opts.Model, opts.HugePages, nil)
	if err != nil {
		return err
	}
	defer lm.File.Close()
	f, m, tok := lm.File, lm.Model, lm.Tokenizer
	pool := kernels.NewPool(opts.Threads)
	defer pool.Close()
	tokens := precompute.Tokenize(tok, string(text))
	sink := opts.Sink
	if sink == 0 {
		sink = -1 // precompute's "none"
	}
	fmt.Fprintf(s.Err, "eval: %d tokens, windows of %d + %d\n", len(tokens), opts.Context, opts.Query)
	rows, err := eval.Run(ctx, m, f, pool, tokens, tok.BOS(), eval.Options{
		Windows: opts.Windows, Context: opts.Context, Query: opts.Query,
		Budgets: budgets, Modes: modes, Block: opts.Block, KV: kvs,
		Squeeze: precompute.SqueezeOptions{Fractions: levels, Seed: opts.Seed, Sink: sink, Window: opts.Window, Cache: cacheType},
		Progress: func(p eval.Progress) {
			fmt.Fprintf(s.Err, "window %d/%d (%.1f s, %.0f s in all)\n", p.Done, p.Total, p.Window.Seconds(), p.Elapsed.Seconds())
		},
	})
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted: %w", err)
		case errors.Is(err, eval.ErrInvalid):
			return &usageError{err}
		}
		return err
	}
	if opts.JSON {
		enc := json.NewEncoder(s.Out)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("write JSON: %w", err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(s.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kv\tbits\tmode\tbudget\twindows\tppl\tppl_dense\tppl_ratio\tkl\ttop1\trealized_budget\tattention_mass\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.3f\t%s\t%g\t%d\t%.4f\t%.4f\t%.4f\t%.5f\t%.4f\t%.4f\t%.4f\t\n",
			r.KV, r.BitsPerElement, r.Mode, r.Budget, r.Windows, r.PPL, r.PPLDense, r.PPLRatio, r.KL, r.Top1, r.RealizedBudget, r.AttentionMass)
	}
	return tw.Flush()
}
