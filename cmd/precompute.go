package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"squeeze/calibrate"
	"squeeze/format"
	"squeeze/precompute"
	"squeeze/runtime/chat"
	"squeeze/runtime/gguf"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
	"squeeze/runtime/tokenizer"
)

// precomputeOptions are the inputs of "squeeze precompute", after flag parsing and
// configuration.
type precomputeOptions struct {
	Model   string
	Output  string
	Inputs  []string
	Include []string
	Exclude []string
	Header  string
	System  string
	Budget  float64
	Levels  string
	Window  int
	Sink    int
	Seed    uint64
	Batch   int
	KVCache string
	CtxSize int
	// KV quantization (KVQuant).
	KV    string
	Calib string
	kvQuantFlags
	// SPEED's early-exit predictor.
	PredictorRank int
	NoPredictor   bool
	// Chat puts the context into the system message of the model's chat template.
	Chat bool

	// From the global options.
	Threads   int
	HugePages bool
	JSON      bool
	Logger    *slog.Logger
}

// precomputeReport is the JSON object "squeeze precompute --json" prints. Scripts depend
// on these names: add fields, never rename or remove one.
type precomputeReport struct {
	Output      string             `json:"output"`
	Tokens      int                `json:"tokens"`
	Layers      int                `json:"layers"`
	KVHeads     int                `json:"kv_heads"`
	Documents   int                `json:"documents"`
	Skipped     []skippedFile      `json:"skipped"`
	Seconds     float64            `json:"seconds"`
	PrefillS    float64            `json:"prefill_s"`
	ClusterS    float64            `json:"cluster_s"`
	QuantizeS   float64            `json:"quantize_s"`
	CalibrateS  float64            `json:"calibrate_s"`
	WriteS      float64            `json:"write_s"`
	FileBytes   int64              `json:"file_bytes"`
	TokensPerS  float64            `json:"tokens_per_s"`
	PrefillTPS  float64            `json:"prefill_tokens_per_s"`
	Budget      float64            `json:"budget"`
	KV          string             `json:"kv"`
	Calibration []calibrationEntry `json:"calibration"`
}

// skippedFile is an input left out, in JSON reports.
type skippedFile struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// calibrationEntry is one calibrated budget, in JSON reports.
type calibrationEntry struct {
	Budget           float64   `json:"budget"`
	Fraction         float64   `json:"fraction"`
	KeyFraction      float64   `json:"key_fraction"`
	CentroidFraction float64   `json:"centroid_fraction"`
	LogThresholds    []float64 `json:"log_thresholds"`
}

func newPrecomputeCommand(g *globalOptions, s streams) *cobra.Command {
	opts := &precomputeOptions{}
	cmd := &cobra.Command{
		Use:   "precompute [flags] -o OUT.sqz INPUT...",
		Short: "Squeeze a fixed context (files, directories, stdin) into an artifact",
		Long: `Run a fixed context through a model once and write an artifact that "squeeze
ask" answers queries from: the context's keys and values (f16, or quantized to
2-4 bits with --kv), a centroid tree
per layer and KV head over its keys, and lookup thresholds calibrated for a
range of budgets (the fraction of the context's keys a query reads).

Inputs are files, directories (read recursively in name order, skipping names
that start with a dot; --include and --exclude select their files) or "-" for
standard input. Binary files (a NUL byte or invalid UTF-8) are skipped with a
note. The documents are joined in order, each behind a header (--header, where
{path} stands for the document's path), after the --system text if any. The
context must fit the model's context length (--ctx-size raises the limit).

--chat builds the context for chat requests ("squeeze serve"): the joined text
becomes the system message of the model's chat template (tokenizer.chat_template),
so the artifact holds the template's opening (BOS, the system header) and the
context, and the server renders each conversation around it. The model must have
a chat template of a known family.

--kv nuq3 (or nuq2, nuq4; nf2-4 and int2-4 as baselines) stores the keys and
values with KVQuant: keys before RoPE with one range per channel, values one per
token, per-layer datatypes fitted by 1-D k-means (nuq), --outliers of each
vector kept exactly, the attention sink in f16; --qnorm corrects the levels
(default auto: at 2 bits; --qnorm=on, --qnorm=off); --post-rope quantizes keys after RoPE and --per-token-keys
keys per token like values (ablations). The nuq k-means weighs each value by
its Fisher information (a backward pass over the context, or over the --calib
text) times its range squared; --kv-weighting fisher drops the range, none
weighs all values alike.

The same inputs and flags give a byte-identical artifact. The artifact is
written to a temporary file and renamed into place: a failed or interrupted
run (Ctrl-C: exit status 130) leaves no partial file. An output that names the
model, the --calib text or an input document is refused before any work.

With --json one object is printed at the end with the fields output, tokens,
layers, kv_heads, documents, skipped (path, reason), seconds, prefill_s,
cluster_s, quantize_s, calibrate_s, write_s, file_bytes, tokens_per_s,
prefill_tokens_per_s, budget, kv and calibration (budget, fraction, key_fraction,
centroid_fraction, log_thresholds per calibrated budget).`,
		Example: `  # The repository's Go sources with the demo model
  $ squeeze precompute -o repo.sqz --include '*.go' --exclude testdata .

  # A document from stdin, a system text, budget 1/8
  $ cat spec.md | squeeze precompute --model M.gguf --system "Answer from the spec." --budget 0.125 -o spec.sqz -`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("precompute needs at least one input (a file, a directory or \"-\")")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Inputs = args
			opts.Threads, opts.JSON, opts.Logger, opts.HugePages = g.Threads, g.JSON, g.logger, g.HugePages
			return runPrecompute(cmd.Context(), opts, s)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&opts.Model, "model", "m", defaultModel, "GGUF model `file`")
	f.StringVarP(&opts.Output, "output", "o", "", "artifact `file` to write (required)")
	f.StringArrayVar(&opts.Include, "include", nil, "read only directory files matching this `glob` (repeatable; a glob without / matches base names)")
	f.StringArrayVar(&opts.Exclude, "exclude", nil, "skip directory files and directories matching this `glob` (repeatable)")
	f.StringVar(&opts.Header, "header", precompute.DefaultHeaderTemplate, "header `template` before each document: {path} is its path, \\n a newline, \\t a tab")
	f.StringVar(&opts.System, "system", "", "`text` put before the documents")
	f.BoolVar(&opts.Chat, "chat", false, "build the context for chat requests: the text as the system message of the model's chat template")
	f.Float64Var(&opts.Budget, "budget", precompute.DefaultBudget, "default fraction of the context's keys a query reads, in (0, 1]")
	f.StringVar(&opts.Levels, "levels", "0.01,0.05", "tree levels: clusters as fractions of the keys, coarse to fine, comma-separated")
	f.IntVar(&opts.Window, "window", precompute.DefaultWindow, "last tokens always attended; their queries calibrate the thresholds")
	f.IntVar(&opts.Sink, "sink", precompute.DefaultSink, "first tokens always attended (0 = none)")
	f.Uint64Var(&opts.Seed, "seed", 0, "k-means seed")
	f.IntVar(&opts.Batch, "batch", precompute.DefaultBatch, "tokens per forward pass")
	f.StringVar(&opts.KVCache, "kv-cache", "f16", "KV cache type of the prefill: f16 or f32")
	f.IntVar(&opts.CtxSize, "ctx-size", 0, "most context tokens (0 = the model's context length; more lets RoPE run past it)")
	f.StringVar(&opts.KV, "kv", format.KVEncodingF16, "KV storage: f16, or quantized nuq2|nuq3|nuq4 (nf2-4, int2-4 as baselines)")
	opts.kvQuantFlags.add(f)
	f.StringVar(&opts.Calib, "calib", "", "text `file` whose sensitivities weigh the nuq fit (default: the context itself)")
	f.IntVar(&opts.PredictorRank, "predictor-rank", 0, "rank of the early-exit predictor's map (0 = full up to width 1024, 256 above; -1 = a bias only)")
	f.BoolVar(&opts.NoPredictor, "no-predictor", false, "fit no early-exit predictor for speculative decoding")
	return cmd
}

// parseLevels reads --levels.
func parseLevels(s string) ([]float64, error) {
	var out []float64
	for part := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(v > 0 && v <= 1) || (len(out) > 0 && v <= out[len(out)-1]) {
			return nil, usageErrorf("--levels %q: want increasing fractions in (0, 1], comma-separated", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// runPrecompute checks the options, runs the pipeline with a progress display on stderr
// and prints the summary.
func runPrecompute(ctx context.Context, opts *precomputeOptions, s streams) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	levels, err := parseLevels(opts.Levels)
	if err != nil {
		return err
	}
	cacheType, err := parseCacheType(opts.KVCache)
	if err != nil {
		return err
	}
	switch {
	case opts.Output == "":
		return usageErrorf("--output is required")
	case isDir(opts.Output):
		return usageErrorf("--output %s is a directory: name the artifact file to write", opts.Output)
	case !(opts.Budget > 0 && opts.Budget <= 1):
		return usageErrorf("--budget %v: want a fraction in (0, 1]", opts.Budget)
	case opts.Window < 1:
		return usageErrorf("--window %d: want >= 1", opts.Window)
	case opts.Sink < 0:
		return usageErrorf("--sink %d: want >= 0", opts.Sink)
	case opts.Batch < 1:
		return usageErrorf("--batch %d: want >= 1", opts.Batch)
	case opts.CtxSize < 0:
		return usageErrorf("--ctx-size %d: want >= 0", opts.CtxSize)
	case opts.Threads < 0:
		return usageErrorf("--threads %d: want >= 0", opts.Threads)
	case opts.PredictorRank < -1:
		return usageErrorf("--predictor-rank %d: want >= -1", opts.PredictorRank)
	case !strings.Contains(opts.Header, "{path}"):
		log.Warn("--header has no {path}: documents will not be named in the context")
	}
	kv, err := opts.options(opts.KV)
	if err != nil {
		return err
	}
	if err := opts.checkQuantized(opts.KV); err != nil {
		return err
	}
	header := strings.NewReplacer(`\\`, `\`, `\n`, "\n", `\t`, "\t").Replace(opts.Header)
	sink := opts.Sink
	if sink == 0 {
		sink = -1 // precompute's "none"
	}
	prog := newProgressDisplay(s.Err)
	defer prog.finish()
	res, err := precompute.Run(ctx, precompute.Options{
		Model:          opts.Model,
		Output:         opts.Output,
		Inputs:         opts.Inputs,
		Input:          precompute.InputOptions{Include: opts.Include, Exclude: opts.Exclude, Stdin: s.In},
		HeaderTemplate: header,
		System:         opts.System,
		Chat:           opts.Chat,
		ContextLength:  opts.CtxSize,
		Threads:        opts.Threads,
		MapModel:       !opts.HugePages,
		Calib:          opts.Calib,
		Squeeze: precompute.SqueezeOptions{
			Fractions:   levels,
			Seed:        opts.Seed,
			Sink:        sink,
			Window:      opts.Window,
			Budget:      opts.Budget,
			Batch:       opts.Batch,
			Cache:       cacheType,
			KV:          kv,
			Predictor:   calibrate.PredictorOptions{Rank: opts.PredictorRank},
			NoPredictor: opts.NoPredictor,
			Progress:    prog.update,
		},
	})
	prog.finish()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted; no artifact written: %w", err)
		case errors.Is(err, precompute.ErrModel), errors.Is(err, gguf.ErrNotGGUF), errors.Is(err, model.ErrArchitecture),
			errors.Is(err, tokenizer.ErrInvalidVocab):
			return &modelError{opts.Model, err}
		case errors.Is(err, precompute.ErrPattern), errors.Is(err, precompute.ErrOutputIsInput):
			return &usageError{err}
		case errors.Is(err, chat.ErrNoTemplate), errors.Is(err, chat.ErrUnsupported):
			return &usageError{fmt.Errorf("--chat: %w", err)}
		}
		return err
	}
	for _, sk := range res.Skipped {
		fmt.Fprintf(s.Err, "skipped %s: %s\n", sk.Path, sk.Reason)
	}
	log.Info("precomputed", "output", res.Output, "tokens", res.Tokens, "seconds", res.Seconds, "bytes", res.FileBytes)

	report := precomputeReport{
		Output: res.Output, Tokens: res.Tokens, Layers: res.Layers, KVHeads: res.KVHeads,
		Documents: res.Documents, Skipped: []skippedFile{},
		Seconds: round3(res.Seconds), PrefillS: round3(res.Prefill.Seconds()), ClusterS: round3(res.Cluster.Seconds()),
		QuantizeS: round3(res.Quantize.Seconds()), CalibrateS: round3(res.Calibrate.Seconds()), WriteS: round3(res.Write.Seconds()),
		FileBytes: res.FileBytes, TokensPerS: round1(res.TokensPerSecond), PrefillTPS: round1(res.PrefillTokensPerSecond),
		Budget:      opts.Budget,
		KV:          opts.KV,
		Calibration: calibrationEntries(res.Thresholds, res.Header.Calibration),
	}
	for _, sk := range res.Skipped {
		report.Skipped = append(report.Skipped, skippedFile{sk.Path, sk.Reason})
	}
	if opts.JSON {
		enc := json.NewEncoder(s.Out)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(report); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
		return nil
	}
	docs := "documents"
	if res.Documents == 1 {
		docs = "document"
	}
	_, err = fmt.Fprintf(s.Out, "wrote %s: %d tokens from %d %s, %.1f MB in %.1f s (%.0f tokens/s; prefill %.0f tokens/s)\n",
		res.Output, res.Tokens, res.Documents, docs, float64(res.FileBytes)/1e6, res.Seconds, res.TokensPerSecond, res.PrefillTokensPerSecond)
	return err
}

// calibrationEntries converts thresholds and their statistics for JSON.
func calibrationEntries(th []sparse.Threshold, stats []format.CalibrationStats) []calibrationEntry {
	out := []calibrationEntry{}
	for i, t := range th {
		e := calibrationEntry{Budget: t.Budget, Fraction: round4(t.Fraction), LogThresholds: []float64{}}
		if i < len(stats) {
			e.KeyFraction, e.CentroidFraction = round4(stats[i].KeyFraction), round4(stats[i].CentroidFraction)
		}
		for _, v := range t.LogTau {
			if v < -1e30 { // -Inf: the level is not scored; JSON has no infinity
				e.LogThresholds = append(e.LogThresholds, -1e308)
				continue
			}
			e.LogThresholds = append(e.LogThresholds, round4(float64(v)))
		}
		out = append(out, e)
	}
	return out
}

// round3 and round4 round to 3 and 4 decimals for reports.
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
func round4(x float64) float64 {
	if x < 0 {
		return -round4(-x)
	}
	return float64(int64(x*10000+0.5)) / 10000
}

// progressDisplay shows precompute's progress on stderr: a progress bar per stage on a
// terminal, plain lines (at most one per second per stage, plus stage ends) otherwise.
type progressDisplay struct {
	w     io.Writer
	tty   bool
	stage precompute.Stage
	bar   *progressbar.ProgressBar
	last  time.Time
}

func newProgressDisplay(w io.Writer) *progressDisplay {
	p := &progressDisplay{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// unit names what a stage counts.
func unit(s precompute.Stage) string {
	switch s {
	case precompute.StagePrefill:
		return "tokens"
	case precompute.StageCluster:
		return "trees"
	case precompute.StageCalibrate:
		return "budgets"
	case precompute.StageQuantize:
		return "layers"
	}
	return ""
}

func (p *progressDisplay) update(pr precompute.Progress) {
	if pr.Stage != p.stage {
		p.finish()
		p.stage = pr.Stage
		if p.tty && pr.Total > 0 {
			p.bar = progressbar.NewOptions(pr.Total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(fmt.Sprintf("%-9s", pr.Stage)),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString(unit(pr.Stage)),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetWidth(30),
			)
		} else if !p.tty {
			fmt.Fprintf(p.w, "%s\n", pr.Stage)
		}
		p.last = time.Now()
	}
	if p.bar != nil {
		p.bar.Set(pr.Done)
		return
	}
	if !p.tty && pr.Total > 0 && (time.Since(p.last) >= time.Second || pr.Done == pr.Total) {
		p.last = time.Now()
		line := fmt.Sprintf("%s %d/%d %s", pr.Stage, pr.Done, pr.Total, unit(pr.Stage))
		if pr.TokensPerSecond > 0 {
			line += fmt.Sprintf(" (%.0f tokens/s)", pr.TokensPerSecond)
		}
		fmt.Fprintln(p.w, line)
	}
}

// finish ends the current stage's bar.
func (p *progressDisplay) finish() {
	if p.bar != nil {
		p.bar.Exit()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}

// isDir reports whether path names an existing directory.
func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
