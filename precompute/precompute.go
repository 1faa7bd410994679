// Package precompute is squeeze's offline pipeline: it turns a fixed context (files,
// directories, standard input) into an artifact that squeeze ask and serve answer queries
// from.
//
// Run reads the inputs (ReadInputs), joins them behind per-document headers (Join),
// for a chat context (Options.Chat) puts the text into the system message of the model's
// chat template (ChatText), tokenizes the text (BOS first), and calls Squeeze, which prefills the tokens through the
// model in batches, collecting every layer's post-RoPE keys and values and the queries of
// the context's last window; builds a centroid tree (package hierarchy) per (layer, KV head)
// over the keys of every position but the attention sink and that window, which are
// always attended; stores keys and values in cluster order as f16 rows, or quantized
// (SqueezeOptions.KV: KVQuant's per-layer datatypes, keys before RoPE per channel, values
// per token, outliers exact, the sink in f16); and calibrates the
// lookup thresholds on the window's queries for the requested budget and a ladder of
// standard ones. Run then writes the artifact (format.WriteArtifact) atomically: a
// cancelled or failed run leaves no file.
//
// The output depends only on the model, the inputs and the options: the same run gives a
// byte-identical artifact (documents in input order, directories walked in lexical order,
// seeded k-means, no timestamps). The package does no terminal I/O; progress goes to a
// callback.
package precompute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"squeeze/format"
	"squeeze/runtime/chat"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
	"squeeze/runtime/tokenizer"
)

// ErrContextTooLong means the context has more tokens than the model's context length (or
// Options.ContextLength).
var ErrContextTooLong = errors.New("precompute: context too long")

// ErrModel means the model file cannot be used: unreadable, or its tokenizer and weights
// disagree. The wrapped errors say why.
var ErrModel = errors.New("precompute: model")

// ErrOutputIsInput means the output path names a file the run reads: the model, the
// calibration text or an input document. Writing it would destroy that file.
var ErrOutputIsInput = errors.New("precompute: the output is also an input")

// Options configure Run.
type Options struct {
	// Model is the GGUF model file; Output the artifact path.
	Model, Output string
	// Inputs are files, directories or "-" (Input.Stdin); see ReadInputs.
	Inputs []string
	// Input selects directory files and provides standard input.
	Input InputOptions
	// HeaderTemplate is put before each document, {path} replaced by its path ("" puts
	// no header; DefaultHeaderTemplate is squeeze's default); System is put before the
	// documents.
	HeaderTemplate, System string
	// ContextLength is the most tokens the context may have (0: the model's context
	// length). A longer value lets RoPE run past the trained length.
	ContextLength int
	// Threads is the number of threads of the forward pass and calibration (0: all cores).
	Threads int
	// MapModel keeps the model in the file's mapping (gguf.OpenMapped) instead of a
	// copy in huge pages (gguf.Open).
	MapModel bool
	// Squeeze tunes the clustering and calibration (its Progress receives every stage).
	Squeeze SqueezeOptions
	// Calib, if set, is a text file whose sensitivities weigh the fit of quantized KV
	// datatypes (Squeeze.KV.Calib, tokenized with BOS first) instead of the context's own.
	Calib string
	// Chat builds the context for chat requests: the joined text becomes the system
	// message of a conversation in the model's chat template (ChatText), tokenized with
	// special tokens parsed (TokenizeChat), and the artifact records the template's family
	// and opening (format.Settings.Chat). The model must have a chat template of a family
	// runtime/chat renders.
	Chat bool
}

// Result summarizes a Run.
type Result struct {
	// Output is the artifact path; FileBytes its size.
	Output    string
	FileBytes int64
	// Tokens is the number of context tokens; Layers and KVHeads the model's.
	Tokens, Layers, KVHeads int
	// Documents is the number of documents read; Skipped lists files left out.
	Documents int
	Skipped   []Skipped
	// Sink and Window are the always-attended counts used.
	Sink, Window int
	// Header is the artifact's header; Thresholds the calibrated thresholds (ascending by
	// budget, parallel to Header.Calibration).
	Header     *format.Header
	Thresholds []sparse.Threshold
	// Seconds is the whole run's duration; Prefill, Cluster, Quantize, Calibrate and
	// Write the stages' (Quantize is 0 for f16 rows).
	Seconds                                      float64
	Prefill, Cluster, Quantize, Calibrate, Write time.Duration
	// TokensPerSecond is tokens per second of the whole run; PrefillTokensPerSecond of the
	// prefill alone.
	TokensPerSecond, PrefillTokensPerSecond float64
}

// Run builds the artifact of opts.Inputs with opts.Model and writes it to opts.Output.
// Errors: ErrNoInput, ErrContextTooLong, ErrModel (with the gguf, model or tokenizer error
// wrapped), ErrInvalid, ErrPattern, ErrOutputIsInput, ctx's error; no file is left at
// Output on any error, and a file already there is replaced only on success.
func Run(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	so := opts.Squeeze.withDefaults()
	report := func(p Progress) {
		if so.Progress != nil {
			so.Progress(p)
		}
	}
	if opts.Output == "" {
		return nil, fmt.Errorf("%w: no output path", ErrInvalid)
	}
	if err := checkOutput(opts.Output, input{"model", opts.Model}, input{"calibration text", opts.Calib}); err != nil {
		return nil, err
	}
	open := gguf.Open
	if opts.MapModel {
		open = gguf.OpenMapped
	}
	f, err := open(opts.Model)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	defer f.Close()
	m, err := model.Load(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrModel, opts.Model, err)
	}
	vocab, err := tokenizer.ReadVocab(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrModel, opts.Model, err)
	}
	tok, err := tokenizer.New(vocab)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrModel, opts.Model, err)
	}
	if m.Config.Vocab != tok.VocabSize() {
		return nil, fmt.Errorf("%w: %s: %d rows of token embeddings for %d tokens", ErrModel, opts.Model, m.Config.Vocab, tok.VocabSize())
	}
	var tmpl *chat.Template
	if opts.Chat {
		if tmpl, err = chat.FromGGUF(f); err != nil {
			return nil, fmt.Errorf("precompute: a context for chat needs the model's chat template: %s: %w", opts.Model, err)
		}
	}

	if opts.Calib != "" {
		text, err := os.ReadFile(opts.Calib)
		if err != nil {
			return nil, fmt.Errorf("precompute: calibration text: %w", err)
		}
		so.KV.Calib = Tokenize(tok, string(text))
	}

	report(Progress{Stage: StageRead})
	docs, skipped, err := ReadInputs(ctx, opts.Inputs, opts.Input)
	if err != nil {
		return nil, err
	}
	read := make([]input, 0, len(docs))
	for _, d := range docs {
		if d.Path != "-" {
			read = append(read, input{"input document", filepath.FromSlash(d.Path)})
		}
	}
	if err := checkOutput(opts.Output, read...); err != nil {
		return nil, err
	}
	template := opts.HeaderTemplate
	text, spans := Join(docs, template, opts.System)

	var chatInfo *format.ChatInfo
	if tmpl != nil {
		split, moved, err := ChatText(tmpl, text, spans)
		if err != nil {
			return nil, err
		}
		text, spans = split.Before+split.Context, moved
		chatInfo = &format.ChatInfo{Family: tmpl.Family(), Before: split.Before}
	}

	report(Progress{Stage: StageTokenize, Elapsed: time.Since(start)})
	var tokens []int32
	if tmpl != nil {
		tokens = TokenizeChat(tok, tmpl, text)
	} else {
		tokens = Tokenize(tok, text)
	}
	limit := opts.ContextLength
	if limit <= 0 {
		limit = m.Config.ContextLength
	}
	if len(tokens) > limit {
		return nil, fmt.Errorf("%w: %d tokens, %d more than the context length of %d", ErrContextTooLong, len(tokens), len(tokens)-limit, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fingerprint, err := format.ModelFingerprint(opts.Model, f)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}

	pool := kernels.NewPool(opts.Threads)
	defer pool.Close()
	sq, err := Squeeze(ctx, m, f, pool, tokens, so)
	if err != nil {
		return nil, err
	}

	cfg := &m.Config
	h := format.Header{
		Model: format.ModelInfo{
			File:                 filepath.Base(opts.Model),
			Fingerprint:          fingerprint,
			TokenizerFingerprint: format.TokenizerFingerprint(vocab),
			Arch:                 cfg.Arch,
			Layers:               cfg.Layers, Dim: cfg.Dim, Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim,
			Vocab: cfg.Vocab, ContextLength: cfg.ContextLength,
			RopeBase: cfg.RopeBase, RopeDim: cfg.RopeDim, RopeScale: cfg.RopeScale, NeoX: cfg.NeoX, RopeFreqFactors: cfg.RopeFreqFactors,
		},
		Settings: format.Settings{
			KV:             kvEncoding(so.KV),
			Fractions:      so.Fractions,
			Seed:           so.Seed,
			Sink:           sq.Sink,
			Window:         sq.Window,
			Budget:         so.Budget,
			CentroidCost:   so.CentroidCost,
			Batch:          so.Batch,
			Cache:          so.Cache.String(),
			HeaderTemplate: template,
			System:         opts.System,
			Chat:           chatInfo,
		},
		Tokens:      len(tokens),
		Documents:   spans,
		Calibration: sq.Calibration,
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	report(Progress{Stage: StageWrite, Elapsed: time.Since(start)})
	ws := time.Now()
	if err := format.WriteArtifactContext(ctx, opts.Output, &format.Artifact{Header: h, Context: sq.Context, Text: text, KV: sq.KV, Predictor: sq.Predictor}); err != nil {
		return nil, err
	}
	res := &Result{
		Output: opts.Output, Tokens: len(tokens), Layers: cfg.Layers, KVHeads: cfg.KVHeads,
		Documents: len(docs), Skipped: skipped, Sink: sq.Sink, Window: sq.Window, Header: &h, Thresholds: sq.Context.Thresholds,
		Prefill: sq.Prefill, Cluster: sq.Cluster, Quantize: sq.Quantize, Calibrate: sq.Calibrate, Write: time.Since(ws),
	}
	if st, err := os.Stat(opts.Output); err == nil {
		res.FileBytes = st.Size()
	}
	res.Seconds = time.Since(start).Seconds()
	res.TokensPerSecond = float64(len(tokens)) / res.Seconds
	res.PrefillTokensPerSecond = float64(len(tokens)) / sq.Prefill.Seconds()
	return res, nil
}

// Tokenize encodes the context text with BOS first (when the model has a BOS token), as
// precompute does.
func Tokenize(tok *tokenizer.Tokenizer, text string) []int32 {
	return withBOS(tok, tok.Encode(text, true))
}

// withBOS returns tokens with the model's BOS token first (if it has one), added unless
// tokens start with it.
func withBOS(tok *tokenizer.Tokenizer, tokens []int32) []int32 {
	if bos := tok.BOS(); bos >= 0 && (len(tokens) == 0 || tokens[0] != bos) {
		tokens = append([]int32{bos}, tokens...)
	}
	return tokens
}

// checkOutput fails early for an output path that writing the artifact would fail on
// (an existing directory: ErrInvalid) or that names a file the run reads (the model, the
// calibration text or a document: ErrOutputIsInput). A path that does not exist yet
// passes.
func checkOutput(output string, inputs ...input) error {
	out, err := os.Stat(output)
	if err != nil {
		return nil // not there yet (or not reachable: creating it reports why)
	}
	if out.IsDir() {
		return fmt.Errorf("%w: the output %s is a directory", ErrInvalid, output)
	}
	for _, in := range inputs {
		if in.path == "" {
			continue
		}
		if info, err := os.Stat(in.path); err == nil && os.SameFile(info, out) {
			return fmt.Errorf("%w: %s is the %s %s; refusing to overwrite it", ErrOutputIsInput, output, in.role, in.path)
		}
	}
	return nil
}

// input is a file a run reads, and what it is to the run.
type input struct{ role, path string }
