package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"squeeze/format"
	"squeeze/runtime/chat"
	"squeeze/runtime/decode"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/sparse"
	"squeeze/runtime/speculate"
)

// askOptions are the inputs of "squeeze ask", after flag parsing and configuration.
type askOptions struct {
	Artifact      string
	Query         string // "-" means standard input
	Model         string // "" means the model recorded in the artifact
	Budget        float64
	BudgetSet     bool // --budget was given
	Dense         bool
	QueryTemplate string
	TemplateSet   bool            // --query-template was given
	Speculate     string          // --speculate: a speculate.Modes name
	Gen           generateOptions // --max-tokens, sampling flags, --stop, --kv-cache
	KVAppend      bool            // --kv-append: quantize the values of old user tokens
	KVAppendAfter int             // --kv-append-after: recent tokens kept in f16

	// From the global options.
	Threads   int
	HugePages bool
	JSON      bool
	Logger    *slog.Logger
}

// askReport is the JSON object "squeeze ask --json" prints. Scripts depend on these
// names: add fields, never rename or remove one.
type askReport struct {
	Artifact          string  `json:"artifact"`
	Model             string  `json:"model"`
	Text              string  `json:"text"`
	Tokens            []int32 `json:"tokens"`
	GeneratedTokens   int     `json:"generated_tokens"`
	PromptTokens      int     `json:"prompt_tokens"`
	ContextTokens     int     `json:"context_tokens"`
	StopReason        string  `json:"stop_reason"`
	LoadMS            float64 `json:"load_ms"`
	TTFTMS            float64 `json:"ttft_ms"`
	DecodeMS          float64 `json:"decode_ms"`
	DecodeTokensPerS  float64 `json:"decode_tokens_per_s"`
	Budget            float64 `json:"budget"`
	Dense             bool    `json:"dense"`
	RealizedBudget    float64 `json:"realized_budget"`
	KeysFraction      float64 `json:"keys_fraction"`
	CentroidsFraction float64 `json:"centroids_fraction"`
	Seed              int64   `json:"seed"`
	Threads           int     `json:"threads"`
	Speculate         string  `json:"speculate"`
	Drafted           int     `json:"drafted"`
	Accepted          int     `json:"accepted"`
	VerifyPasses      int     `json:"verify_passes"`
	DecodePasses      int     `json:"decode_passes"`
	// Pipeline is what the pipelined form did, when it decoded (null otherwise).
	Pipeline *pipelineReport `json:"pipeline"`
	// KVAppend is null unless the query's and answer's values were quantized on append.
	KVAppend *kvAppendReport `json:"kv_append"`
}

// kvAppendReport is "kv_append" in the JSON of ask: the user tokens whose values were
// quantized on append (kvquant.Appender) and the memory they take.
type kvAppendReport struct {
	After            int `json:"after"`
	Block            int `json:"block"`
	Tokens           int `json:"quantized_tokens"`
	Bytes            int `json:"bytes"`
	F16Bytes         int `json:"f16_bytes"`
	BytesPerToken    int `json:"bytes_per_token"`
	F16BytesPerToken int `json:"f16_bytes_per_token"`
}

// pipelineReport is earlyexit.PipelineStats in ask's JSON report.
type pipelineReport struct {
	Period        int `json:"period"`
	Steps         int `json:"steps"`
	Rows          int `json:"rows"`
	Tokens        int `json:"tokens"`
	Launched      int `json:"launched"`
	Accepted      int `json:"accepted"`
	Drafted       int `json:"drafted"`
	DraftAccepted int `json:"draft_accepted"`
	Flushed       int `json:"flushed"`
}

func newAskCommand(g *globalOptions, s streams) *cobra.Command {
	opts := &askOptions{}
	cmd := &cobra.Command{
		Use:   "ask [flags] FILE.sqz {<query> | -}",
		Short: "Answer a query against a precomputed context",
		Long: `Answer a query against a context precomputed by "squeeze precompute" and stream
the answer to stdout. The query is the argument, or standard input when the
argument is "-"; it is placed after the context through --query-template, whose
{query} is replaced by the query (default: a newline, then the query). On an
artifact built with "precompute --chat", whose context is the system message of
a conversation in the model's chat template, the query (through
--query-template only when it is given) is the user's turn, rendered with the
template as "squeeze serve" renders a chat request, and the answer is the
assistant's turn: it ends at the template's end of turn.

Attention to the context is sparse: for each layer and key/value head, the
query's tokens make one lookup in the artifact's centroid tree, and each
generated token a fresh one; only the selected clusters' keys (and the always-
attended first and last tokens) are read. --budget picks the calibrated
threshold for that fraction of the keys (the artifact's default when unset; the
largest calibrated budget not above the request); --budget 1 or --dense
attends to every key. The realized budget, (keys read + centroids scored) /
keys over all lookups, is reported by --json and logged at level info.

--model defaults to the model recorded in the artifact (its file name, looked
up in the current directory, next to the artifact, then as the demo model). An
artifact is refused with a model other than the one it was built with.

Sampling, --stop, --max-tokens and Ctrl-C behave as in "squeeze generate".

Greedy decoding (--temp 0) speculates: drafts of the next tokens (--speculate
ngram: the tokens that followed the last few tokens' earlier occurrence in the
context or the answer; early: a predictor from an early layer, when the
artifact has one; auto: any) are checked in one batched pass of the model, and
the longest part that greedy decoding would also produce is kept. The answer is
the same token for token as without speculation; a policy drafts only while
drafts pay for their verification, judged from the acceptance and timing of
recent passes. --speculate off decodes one token per pass. Sampling with a
temperature never speculates.

On a parameter-shared model (its layers repeat G blocks, as gocode-shared's
do), greedy answers without a repetition penalty run SPEED's pipelined form
(--speculate auto or early): the guesses of the exits after each cycle of
blocks, extended by n-gram drafts, run through the same blocks in one batched
step as the token in flight, and are verified when they reach the full depth
(while fewer than half are confirmed, only one every 8 tokens is tried); again
the answer is the same token for token.

With --json nothing is streamed; one JSON object is printed at the end, with the
fields text, tokens, generated_tokens, prompt_tokens (the query's tokens),
context_tokens, stop_reason, load_ms, ttft_ms (the query's prefill, which yields
the first token), decode_ms, decode_tokens_per_s, budget, dense,
realized_budget, keys_fraction, centroids_fraction, seed, threads, artifact,
model, speculate, drafted, accepted, verify_passes, decode_passes, pipeline and
kv_append.

On an artifact with a quantized KV cache (precompute --kv nuq3, ...), a long
answer's values are quantized as they are appended, as KVQuant does: once the
cache of the query and the answer holds --kv-append-after + 256 tokens, the
oldest 256 move out of it, their keys kept in f16 and their values quantized per
token with the artifact's value datatype of their layer and 1% outliers (the
artifact's fraction), and are attended with the context from then on. The last
--kv-append-after tokens (at least 16) always stay in f16, so speculation rolls
back as before and gives the same tokens as plain greedy decoding.
--kv-append=false keeps every user token in f16. "kv_append" in the JSON
reports after, block, quantized_tokens, bytes and f16_bytes (the memory of the
quantized tokens, and what f16 would take) and their per-token values (null
when off). The pipelined form above keeps every token in f16.`,
		Example: `  # Ask the repository's artifact a question, greedily
  $ squeeze ask --temp 0 repo.sqz "Where is the KV cache allocated?"

  # Dense attention for comparison, machine-readable
  $ squeeze ask --dense --json repo.sqz "What does Forward do?" | jq .decode_tokens_per_s`,
		Args: exactArgs(2, `ask takes an artifact and one query argument (use "-" to read the query from stdin)`),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Artifact, opts.Query = args[0], args[1]
			opts.BudgetSet = cmd.Flags().Changed("budget")
			opts.TemplateSet = cmd.Flags().Changed("query-template")
			opts.Threads, opts.JSON, opts.Logger, opts.HugePages = g.Threads, g.JSON, g.logger, g.HugePages
			opts.Gen.Threads, opts.Gen.JSON, opts.Gen.Logger = g.Threads, g.JSON, g.logger
			return runAsk(cmd.Context(), opts, s)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&opts.Model, "model", "m", "", "GGUF model `file` (default: the one recorded in the artifact)")
	f.Float64Var(&opts.Budget, "budget", 0, "fraction of the context's keys to read per lookup (default: the artifact's; 1 = all)")
	f.BoolVar(&opts.Dense, "dense", false, "attend to every key of the context (no lookup)")
	f.StringVar(&opts.QueryTemplate, "query-template", "\n{query}", "text appended after the context; {query} is replaced by the query")
	f.StringVar(&opts.Speculate, "speculate", "auto", "speculative greedy decoding: auto, off, early or ngram (draft sources)")
	g2 := &opts.Gen
	f.IntVarP(&g2.MaxTokens, "max-tokens", "n", 128, "stop after this many generated tokens (0 = until the context is full)")
	f.Float32Var(&g2.Temp, "temp", 0.8, "sampling temperature (0 = greedy)")
	f.IntVar(&g2.TopK, "top-k", 40, "keep the K most likely tokens (0 = all)")
	f.Float32Var(&g2.TopP, "top-p", 0.95, "keep the most likely tokens up to this cumulative probability (1 = all)")
	f.Float32Var(&g2.MinP, "min-p", 0.05, "drop tokens less likely than this fraction of the most likely one (0 = none)")
	f.Float32Var(&g2.RepeatPenalty, "repeat-penalty", 1.0, "penalise recently seen tokens by this factor (1 = off)")
	f.IntVar(&g2.RepeatLastN, "repeat-last-n", 64, "window of recent tokens for --repeat-penalty")
	f.Int64Var(&g2.Seed, "seed", -1, "random seed (-1 = pick one at random)")
	f.StringArrayVar(&g2.Stop, "stop", nil, "stop before this `string` (repeatable)")
	f.StringVar(&g2.KVCache, "kv-cache", "f16", "storage type of the query's and answer's KV cache: f16 or f32")
	f.BoolVar(&opts.KVAppend, "kv-append", true, "quantize the values of a long answer's older tokens on append (artifacts with a quantized KV cache)")
	f.IntVar(&opts.KVAppendAfter, "kv-append-after", decode.DefaultSpillAfter, "with --kv-append: the number of recent tokens that stay in f16 (at least 16)")
	return cmd
}

// runAsk loads the artifact and the model, checks that they belong together, and answers
// the query (streamed) or prints the JSON report.
func runAsk(ctx context.Context, opts *askOptions, s streams) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gen := &opts.Gen
	so, err := gen.samplingOptions()
	if err != nil {
		return err
	}
	cacheType, err := parseCacheType(gen.KVCache)
	if err != nil {
		return err
	}
	switch {
	case gen.MaxTokens < 0:
		return usageErrorf("--max-tokens %d: want >= 0", gen.MaxTokens)
	case opts.Threads < 0:
		return usageErrorf("--threads %d: want >= 0", opts.Threads)
	case opts.BudgetSet && !(opts.Budget > 0):
		return usageErrorf("--budget %g: want a fraction > 0 (1 or more = dense)", opts.Budget)
	case !strings.Contains(opts.QueryTemplate, "{query}"):
		return usageErrorf("--query-template %q has no {query}", opts.QueryTemplate)
	case opts.KVAppend && opts.KVAppendAfter < decode.MinSpillAfter:
		return usageErrorf("--kv-append-after %d: want at least %d", opts.KVAppendAfter, decode.MinSpillAfter)
	}
	mode, err := speculate.ParseMode(opts.Speculate)
	if err != nil {
		return usageErrorf("--speculate: %v", err)
	}
	query := opts.Query
	if query == "-" {
		b, err := io.ReadAll(s.In)
		if err != nil {
			return fmt.Errorf("read query from stdin: %w", err)
		}
		query = string(b)
	}

	start := time.Now()
	a, err := format.ReadArtifact(opts.Artifact)
	if err != nil {
		return &artifactError{opts.Artifact, err}
	}
	defer a.Close()
	modelPath, err := artifactModelPath(opts.Model, opts.Artifact, a)
	if err != nil {
		return err
	}
	lm, err := loadModel(modelPath, opts.HugePages, func(f *gguf.File) error {
		fp, err := format.ModelFingerprint(modelPath, f)
		if err != nil {
			return &modelError{modelPath, err}
		}
		if err := format.CheckModel(a, modelPath, fp); err != nil {
			return &usageError{fmt.Errorf("%s: %w", opts.Artifact, err)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer lm.File.Close()
	m, tok := lm.Model, lm.Tokenizer
	budget := opts.Budget
	switch {
	case opts.Dense:
		budget = 1
	case !opts.BudgetSet:
		budget = a.Header.Settings.Budget
		if !(budget > 0) {
			budget = 1
		}
	}
	pool := kernels.NewPool(opts.Threads)
	defer pool.Close()
	sess, err := sparse.NewSession(a.Context, m, pool, budget)
	if errors.Is(err, sparse.ErrBudget) {
		return &usageError{err}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", opts.Artifact, err)
	}
	loadTime := time.Since(start)
	th := sess.Threshold()
	log.Info("artifact loaded", "artifact", opts.Artifact, "model", modelPath, "context_tokens", sess.Len(),
		"budget", th.Budget, "dense", sess.Dense(), "threads", pool.Threads(), "load_ms", loadTime.Milliseconds())

	text := strings.ReplaceAll(opts.QueryTemplate, "{query}", query)
	prompt, stops := []int32(nil), gen.Stop
	if a.Header.Settings.Chat == nil {
		prompt = tok.Encode(text, false)
	} else {
		// The context is a conversation's system message: the query is its user turn.
		if !opts.TemplateSet {
			text = query
		}
		after, tmplStops, err := chatQuery(opts.Artifact, a, lm.File, text)
		if err != nil {
			return err
		}
		prompt, stops = tok.EncodeWithSpecials(after, false, true), append(slices.Clone(gen.Stop), tmplStops...)
	}
	// The cache holds the query and the answer. Past the model's trained length (a
	// context that fills it) RoPE extrapolates: room for the query and --max-tokens.
	ctxLen := m.Config.ContextLength - sess.Len()
	if need := len(prompt) + max(gen.MaxTokens, 1); ctxLen < need {
		ctxLen = need
	}
	dopts := decode.Options{
		MaxTokens:  gen.MaxTokens,
		Stop:       stops,
		Sampling:   so,
		Cache:      cacheType,
		ContextLen: ctxLen,
		Prefix:     sess,
	}
	var appender *kvquant.Appender
	if types := valueTypes(a); opts.KVAppend && types != nil {
		if appender, err = kvquant.NewAppender(sess, m, types, a.KV.Outliers); err != nil {
			return &artifactError{opts.Artifact, err}
		}
		appender.Pool = pool
		dopts.Spill = &decode.Spill{To: appender, After: opts.KVAppendAfter, Block: decode.DefaultSpillBlock}
	}
	out := &textOutput{out: s.Out, json: opts.JSON}
	dopts.OnText = out.onText()
	var pipe *earlyexit.Pipeline
	if mode != speculate.ModeOff {
		// The context's n-grams are indexed once; the answer's as it grows. The
		// artifact's early-exit predictor, if any, drafts from an early layer, its
		// drafts restricted to the context's and the answer's tokens.
		ngram := speculate.NewNGram(a.Context.Tokens, 0, 0)
		drafters := []speculate.Drafter{ngram}
		if a.Predictor != nil {
			if err := a.Predictor.Check(&m.Config); err != nil {
				return &artifactError{opts.Artifact, err}
			}
			d := earlyexit.NewDrafter(a.Predictor)
			d.Vocab = a.Context.Tokens
			drafters = append(drafters, d)
		}
		if mode.Allows(earlyexit.DrafterName) {
			// A parameter-shared model decodes greedy answers with the pipelined form
			// (early exits and n-gram drafts in flight together); decode falls back to
			// the policy below when the sampling rules the pipeline out.
			g, err := earlyexit.BlockShare(lm.File, m)
			if err != nil {
				return &modelError{modelPath, err}
			}
			if g < m.Config.Layers {
				dopts.Pipeline = func(t speculate.Target) (decode.Stepper, error) {
					var err error
					pipe, err = earlyexit.NewPipeline(t, earlyexit.PipelineOptions{Vocab: a.Context.Tokens, Drafter: ngram.Clone(), MinAccept: earlyexit.DefaultMinAccept})
					return pipe, err
				}
				log.Info("parameter-shared model: greedy decoding runs the pipelined form", "blocks", g, "layers", m.Config.Layers)
			}
		}
		dopts.Speculate = speculate.NewPolicy(mode, drafters, speculate.PolicyOptions{})
		if !dopts.Speculate.Active() {
			log.Info("no draft source for --speculate: decoding one token per pass", "speculate", mode.String())
		} else if !so.Greedy() {
			log.Info("sampling with a temperature: decoding one token per pass", "speculate", mode.String())
		}
	}
	engine := decode.Engine{Model: m, Tokenizer: tok, Pool: pool}
	res, genErr := engine.GenerateTokens(ctx, prompt, dopts)
	spec := res.Speculation
	specName := mode.String()
	var pipeStats *pipelineReport
	if pipe != nil {
		ps := pipe.Stats()
		specName = "pipeline"
		pipeStats = &pipelineReport{Period: pipe.Period(), Steps: ps.Steps, Rows: ps.Rows, Tokens: ps.Tokens,
			Launched: ps.Launched, Accepted: ps.Accepted, Drafted: ps.Drafted, DraftAccepted: ps.DraftAccepted, Flushed: ps.Flushed}
		spec = ps.Speculation()
	}
	st := sess.Stats()
	log.Info("answered", "prompt_tokens", res.PromptTokens, "ttft_ms", res.PrefillDuration.Milliseconds(),
		"tokens", len(res.Tokens), "decode_tok_per_s", round1(res.DecodeTokensPerSecond()), "stop", res.StopReason,
		"realized_budget", st.RealizedBudget(), "keys_fraction", st.KeysFraction(), "centroids_fraction", st.CentroidsFraction(),
		"speculate", specName, "drafted", spec.Drafted, "accepted", spec.Accepted, "verify_passes", spec.Verifications)

	return out.finish(ctx, res, genErr, "ask", func() any {
		report := askReport{
			Artifact:          opts.Artifact,
			Model:             modelPath,
			Text:              res.Text,
			Tokens:            res.Tokens,
			GeneratedTokens:   len(res.Tokens),
			PromptTokens:      res.PromptTokens,
			ContextTokens:     sess.Len(),
			StopReason:        string(res.StopReason),
			LoadMS:            ms(loadTime),
			TTFTMS:            ms(res.PrefillDuration),
			DecodeMS:          ms(res.DecodeDuration),
			DecodeTokensPerS:  round1(res.DecodeTokensPerSecond()),
			Budget:            th.Budget,
			Dense:             sess.Dense(),
			RealizedBudget:    st.RealizedBudget(),
			KeysFraction:      st.KeysFraction(),
			CentroidsFraction: st.CentroidsFraction(),
			Seed:              gen.Seed,
			Threads:           pool.Threads(),
			Speculate:         specName,
			Drafted:           spec.Drafted,
			Accepted:          spec.Accepted,
			VerifyPasses:      spec.Verifications,
			DecodePasses:      spec.Passes,
			Pipeline:          pipeStats,
		}
		if report.Tokens == nil {
			report.Tokens = []int32{}
		}
		if appender != nil {
			r := &kvAppendReport{After: opts.KVAppendAfter, Block: decode.DefaultSpillBlock,
				Tokens: appender.Tokens(), Bytes: appender.Bytes(), F16Bytes: appender.F16Bytes()}
			if r.Tokens > 0 {
				r.BytesPerToken, r.F16BytesPerToken = r.Bytes/r.Tokens, r.F16Bytes/r.Tokens
			}
			report.KVAppend = r
		}
		return report
	})
}

// chatQuery renders query as the user's turn of a conversation whose system message is
// the context of artifact a (at path), built for chat (precompute --chat), with the chat
// template of the model file f, as squeeze serve renders a chat request: it returns the
// text that follows the context, up to the opening of the assistant's turn, and the
// template's stop strings.
func chatQuery(path string, a *format.Artifact, f *gguf.File, query string) (string, []string, error) {
	c := a.Header.Settings.Chat
	tmpl, err := chat.FromGGUF(f)
	if err != nil {
		return "", nil, &usageError{fmt.Errorf("%s was built for chat with a %s template, but the model's chat template is not usable: %w", path, c.Family, err)}
	}
	pre := chatContext(a)
	if err := tmpl.CheckContext(c.Family, pre); err != nil {
		return "", nil, &usageError{fmt.Errorf("%s: %w: rebuild it with squeeze precompute --chat", path, err)}
	}
	after, err := tmpl.Continue(pre, []chat.Message{{Role: chat.RoleUser, Content: query}}, true)
	if err != nil {
		return "", nil, &usageError{fmt.Errorf("rendering the query as a user turn after %s: %w", path, err)}
	}
	return after, tmpl.Stop(), nil
}

// ms is a duration in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
