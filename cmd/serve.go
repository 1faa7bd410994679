package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"squeeze/format"
	"squeeze/runtime/chat"
	"squeeze/runtime/decode"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/gguf"
	"squeeze/runtime/server"
	"squeeze/runtime/speculate"
)

// serveOptions are the inputs of "squeeze serve", after flag parsing and configuration.
type serveOptions struct {
	Artifacts       []string
	Names           []string // --name, one per artifact
	Model           string   // "" means the model each artifact records
	Addr            string
	Budget          float64 // 0 means each artifact's default
	Parallel        int
	Queue           int
	MaxTokensLimit  int
	RequestTokens   int
	MaxBodyBytes    int64
	ShutdownTimeout time.Duration
	KVCache         string
	Speculate       string // default speculation mode of greedy requests
	KVAppend        bool   // --kv-append: quantize the values of old request tokens
	KVAppendAfter   int    // --kv-append-after: recent tokens kept in f16

	// From the global options.
	Threads   int
	HugePages bool
	JSON      bool
	Logger    *slog.Logger
	// ready, if set (by tests), receives the server's URL once the models are loaded.
	ready func(url string)
}

// serveReady is the JSON line "squeeze serve --json" prints once it serves.
type serveReady struct {
	URL    string   `json:"url"`
	Models []string `json:"models"`
}

func newServeCommand(g *globalOptions, s streams) *cobra.Command {
	opts := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [flags] FILE.sqz...",
		Short: "Serve artifacts over an OpenAI-compatible HTTP API",
		Long: `Serve one or more artifacts over HTTP with the OpenAI API, so that the clients
and libraries written for OpenAI, llama.cpp's llama-server, Ollama or vLLM work
unchanged. Each artifact is one model id: its file name without the extension,
or the matching --name (one per artifact, in order).

Endpoints: POST /v1/completions, POST /v1/chat/completions (both with
"stream": true as server-sent events ending in "data: [DONE]"), GET /v1/models,
GET /health (503 while loading, 200 when ready) and GET /metrics (Prometheus
text). Every request continues after its model's fixed context: a completion's
prompt is appended to the context as is; a chat conversation is rendered with
the model's chat template (tokenizer.chat_template in the GGUF), around the
context as its system message for an artifact built with "precompute --chat",
else after the context and a newline. The request fields "budget" (the
fraction of the context's keys to read; 1 = dense) and "speculate" (auto, off,
early or ngram; greedy requests only, default --speculate) are squeeze
extensions: speculation drafts from the context's n-grams and, when the
artifact has an early-exit predictor, from an early layer. docs/serve.md has
the details.

Up to --parallel requests generate at once, each on --threads/--parallel
threads; up to --queue more wait, and beyond that requests get 429 with
Retry-After. A client that disconnects cancels its generation. On SIGINT or
SIGTERM the server stops accepting requests, lets in-flight ones finish for up
to --shutdown-timeout, cancels the rest and exits with status 0.

--model defaults to the model recorded in each artifact (its file name, looked
up in the current directory, next to the artifact, then as the demo model); an
artifact is refused with a model other than the one it was built with. A
missing, truncated or corrupt artifact exits with status 3.

When the models are loaded, one line is printed on stdout: "serving MODELS on
URL", or with --json the object {"url", "models"}. Requests are logged on
stderr at level info.`,
		Example: `  # Serve the repository's artifact on the default address
  $ squeeze serve repo.sqz

  # Two artifacts under names of our choice, on all interfaces
  $ squeeze serve --addr :8080 --name docs --name code docs.sqz code.sqz

  # Ask it something
  $ curl -s localhost:8080/v1/chat/completions -d '{"model":"repo",
      "messages":[{"role":"user","content":"Where is the KV cache allocated?"}]}'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("serve takes one or more artifact files")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Artifacts = args
			opts.Threads, opts.JSON, opts.Logger, opts.HugePages = g.Threads, g.JSON, g.logger, g.HugePages
			return runServe(cmd.Context(), opts, s)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&opts.Addr, "addr", "127.0.0.1:8080", "listen on this `host:port` (port 0 picks a free one)")
	f.StringArrayVar(&opts.Names, "name", nil, "model `id` of the artifact at the same position (repeatable; default: the file name without extension)")
	f.StringVarP(&opts.Model, "model", "m", "", "GGUF model `file` of every artifact (default: the one each artifact records)")
	f.Float64Var(&opts.Budget, "budget", 0, "budget of requests that give none (default: each artifact's; 1 = dense)")
	f.IntVar(&opts.Parallel, "parallel", server.DefaultParallel, "requests that generate at once")
	f.IntVar(&opts.Queue, "queue", 64, "requests that may wait for a slot; more get 429")
	f.IntVar(&opts.MaxTokensLimit, "max-tokens-limit", server.DefaultMaxTokens, "largest max_tokens a request may ask for (also the default)")
	f.IntVar(&opts.RequestTokens, "request-tokens", 0, "most prompt plus answer tokens per request (0 = the model's context length minus the fixed context, at least 1024)")
	f.Int64Var(&opts.MaxBodyBytes, "max-body-bytes", server.DefaultMaxBodyBytes, "largest request body in bytes")
	f.DurationVar(&opts.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may finish before they are cancelled")
	f.StringVar(&opts.KVCache, "kv-cache", "f16", "storage type of each request's KV cache: f16 or f32")
	f.StringVar(&opts.Speculate, "speculate", "auto", "speculative decoding of greedy requests that name no mode: auto, off, early or ngram")
	f.BoolVar(&opts.KVAppend, "kv-append", true, "quantize the values of a long request's older tokens on append (artifacts with a quantized KV cache)")
	f.IntVar(&opts.KVAppendAfter, "kv-append-after", decode.DefaultSpillAfter, "with --kv-append: the number of recent tokens of a request that stay in f16 (at least 16)")
	return cmd
}

// runServe loads the artifacts and their models, serves them until ctx ends, then shuts
// down gracefully.
func runServe(ctx context.Context, opts *serveOptions, s streams) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cacheType, err := parseCacheType(opts.KVCache)
	if err != nil {
		return err
	}
	spec, err := speculate.ParseMode(opts.Speculate)
	if err != nil {
		return usageErrorf("--speculate %q: want one of %s", opts.Speculate, strings.Join(speculate.Modes, ", "))
	}
	switch {
	case len(opts.Artifacts) == 0:
		return usageErrorf("serve takes one or more artifact files")
	case len(opts.Names) > 0 && len(opts.Names) != len(opts.Artifacts):
		return usageErrorf("%d --name flags for %d artifacts: give one per artifact, in order, or none", len(opts.Names), len(opts.Artifacts))
	case opts.Budget < 0:
		return usageErrorf("--budget %g: want a fraction > 0 (1 or more = dense), or 0 for each artifact's", opts.Budget)
	case opts.Parallel < 1:
		return usageErrorf("--parallel %d: want 1 or more", opts.Parallel)
	case opts.Queue < 0:
		return usageErrorf("--queue %d: want 0 or more", opts.Queue)
	case opts.MaxTokensLimit < 1:
		return usageErrorf("--max-tokens-limit %d: want 1 or more", opts.MaxTokensLimit)
	case opts.RequestTokens < 0:
		return usageErrorf("--request-tokens %d: want 0 (automatic) or more", opts.RequestTokens)
	case opts.MaxBodyBytes < 1024:
		return usageErrorf("--max-body-bytes %d: want 1024 or more", opts.MaxBodyBytes)
	case opts.ShutdownTimeout < 0:
		return usageErrorf("--shutdown-timeout %v: want 0 or more", opts.ShutdownTimeout)
	case opts.Threads < 0:
		return usageErrorf("--threads %d: want >= 0", opts.Threads)
	case opts.KVAppend && opts.KVAppendAfter < decode.MinSpillAfter:
		return usageErrorf("--kv-append-after %d: want at least %d", opts.KVAppendAfter, decode.MinSpillAfter)
	}
	appendAfter := 0
	if opts.KVAppend {
		appendAfter = opts.KVAppendAfter
	}
	ids := make([]string, len(opts.Artifacts))
	seen := map[string]string{}
	for i, path := range opts.Artifacts {
		id := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		if len(opts.Names) > 0 {
			id = opts.Names[i]
		}
		if id == "" || strings.ContainsAny(id, " \t\r\n") {
			return usageErrorf("model id %q of %s: want a non-empty name without spaces (--name)", id, path)
		}
		if other, dup := seen[id]; dup {
			return usageErrorf("%s and %s would both be model %q: give each a --name", other, path, id)
		}
		seen[id] = path
		ids[i] = id
	}

	srv, err := server.New(server.Config{
		Parallel: opts.Parallel, Queue: opts.Queue, Threads: opts.Threads, MaxBodyBytes: opts.MaxBodyBytes,
		MaxTokens: opts.MaxTokensLimit, RequestTokens: opts.RequestTokens, Cache: cacheType, Speculate: spec, Logger: log,
		KVAppendAfter: appendAfter,
	})
	if err != nil {
		return &usageError{err}
	}
	// Listen first, so /health answers 503 while the models load.
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen on --addr %s: %w", opts.Addr, err)
	}
	url := "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening (loading models)", "url", url)

	loaded, err := loadServed(ctx, opts, ids, log)
	defer loaded.close()
	if err == nil {
		err = srv.SetModels(loaded.models)
	}
	if err != nil {
		srv.Close()
		<-served
		return err
	}
	if opts.JSON {
		b, _ := json.Marshal(serveReady{URL: url, Models: ids})
		fmt.Fprintf(s.Out, "%s\n", b)
	} else {
		fmt.Fprintf(s.Out, "serving %s on %s\n", strings.Join(ids, ", "), url)
	}
	if opts.ready != nil {
		opts.ready(url)
	}

	select {
	case err := <-served:
		srv.Close()
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", opts.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := <-served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// servedModels are the loaded artifacts and model files, closed when serving ends.
type servedModels struct {
	models    []*server.Model
	artifacts []*format.Artifact
	files     map[string]*loadedModel // by model path: artifacts of one model share it
	hugePages bool                    // models are opened in huge pages (loadModel)
}

func (l *servedModels) close() {
	for _, a := range l.artifacts {
		a.Close()
	}
	for _, lm := range l.files {
		lm.File.Close()
	}
}

// loadServed reads each artifact, loads (once per file) the model it was built with,
// checking the fingerprint, and reads the model's chat template.
func loadServed(ctx context.Context, opts *serveOptions, ids []string, log *slog.Logger) (*servedModels, error) {
	l := &servedModels{files: map[string]*loadedModel{}, hugePages: opts.HugePages}
	for i, path := range opts.Artifacts {
		if err := ctx.Err(); err != nil {
			return l, err
		}
		start := time.Now()
		a, err := format.ReadArtifact(path)
		if err != nil {
			return l, &artifactError{path, err}
		}
		l.artifacts = append(l.artifacts, a)
		modelPath, err := artifactModelPath(opts.Model, path, a)
		if err != nil {
			return l, err
		}
		lm, err := loadServedModel(l, modelPath, path, a)
		if err != nil {
			return l, err
		}
		budget := opts.Budget
		if budget == 0 {
			budget = a.Header.Settings.Budget
		}
		m := &server.Model{ID: ids[i], Model: lm.Model, Tokenizer: lm.Tokenizer, Context: a.Context, Budget: budget, Predictor: a.Predictor}
		if m.ValueTypes = valueTypes(a); m.ValueTypes != nil { // long requests quantize values on append
			m.ValueOutliers = a.KV.Outliers
		}
		// squeeze.block_share in the GGUF, or byte-identical layers: greedy requests
		// then decode with the pipelined form, as ask does.
		if m.BlockShare, err = earlyexit.BlockShare(lm.File, lm.Model); err != nil {
			return l, &modelError{modelPath, err}
		}
		if !strings.HasSuffix(a.Text, "\n") {
			m.ChatJoin = "\n"
		}
		if c := a.Header.Settings.Chat; c != nil {
			pre := chatContext(a)
			m.ChatContext = &server.ChatContext{Family: c.Family, Before: pre.Before, Context: pre.Context}
		}
		tmpl, err := chat.FromGGUF(lm.File)
		switch {
		case err == nil:
			m.Chat = tmpl
		case errors.Is(err, chat.ErrNoTemplate):
			log.Info("model has no chat template: /v1/chat/completions refuses it", "model", ids[i])
		default:
			log.Warn("chat template not usable: /v1/chat/completions refuses the model", "model", ids[i], "err", err)
		}
		l.models = append(l.models, m)
		log.Info("loaded", "model", ids[i], "artifact", path, "gguf", modelPath, "context_tokens", len(a.Context.Tokens),
			"budget", budget, "chat_template", m.Chat != nil, "chat_context", m.ChatContext != nil, "early_exit", m.Predictor != nil, "load_ms", time.Since(start).Milliseconds())
	}
	return l, nil
}

// chatContext is the text of artifact a, built for chat (a.Header.Settings.Chat is set),
// cut where precompute --chat recorded it: the template's text before the context, and
// the context.
func chatContext(a *format.Artifact) chat.Split {
	before := a.Header.Settings.Chat.Before
	return chat.Split{Before: before, Context: strings.TrimPrefix(a.Text, before)}
}

// loadServedModel loads the model file at modelPath once, checking that artifact a (at
// path) was built with it.
func loadServedModel(l *servedModels, modelPath, path string, a *format.Artifact) (*loadedModel, error) {
	key := filepath.Clean(modelPath)
	if lm, ok := l.files[key]; ok {
		fp, err := format.ModelFingerprint(modelPath, lm.File)
		if err != nil {
			return nil, &modelError{modelPath, err}
		}
		if err := format.CheckModel(a, modelPath, fp); err != nil {
			return nil, &usageError{fmt.Errorf("%s: %w", path, err)}
		}
		return lm, nil
	}
	lm, err := loadModel(modelPath, l.hugePages, func(f *gguf.File) error {
		fp, err := format.ModelFingerprint(modelPath, f)
		if err != nil {
			return &modelError{modelPath, err}
		}
		if err := format.CheckModel(a, modelPath, fp); err != nil {
			return &usageError{fmt.Errorf("%s: %w", path, err)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.files[key] = lm
	return lm, nil
}

// artifactModelPath resolves the model file of the artifact at path artifact (squeeze ask
// and serve): --model (flag), or the artifact's recorded file name in the current
// directory, next to the artifact, or as the demo model.
func artifactModelPath(flag, artifact string, a *format.Artifact) (string, error) {
	if flag != "" {
		return flag, nil
	}
	name := a.Header.Model.File
	if name == "" {
		return "", usageErrorf("%s records no model file: pass --model", artifact)
	}
	candidates := []string{name, filepath.Join(filepath.Dir(artifact), filepath.Base(name))}
	if filepath.Base(defaultModel) == filepath.Base(name) {
		candidates = append(candidates, defaultModel)
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", usageErrorf("the model %q of %s is not in the current directory or next to the artifact: pass --model", name, artifact)
}
