package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"squeeze/runtime/chat"
	"squeeze/runtime/decode"
	"squeeze/runtime/earlyexit"
	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
	"squeeze/runtime/speculate"
	"squeeze/runtime/tokenizer"
)

// Defaults for the Config fields left at zero.
const (
	DefaultParallel     = 2
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxTokens    = 2048
	// BodyTimeout bounds the time a client may take to send a request body.
	BodyTimeout = 30 * time.Second
	// MinRequestTokens is the least room a request gets for its prompt and answer when
	// the fixed context leaves less of the model's trained length (RoPE then runs past
	// it, as squeeze ask does).
	MinRequestTokens = 1024
)

// Model is one served model: a model with its tokenizer and a squeezed fixed context,
// shared read-only by every request.
type Model struct {
	// ID is the model id clients send in the "model" field.
	ID string
	// Model and Tokenizer come from the same GGUF file; Context is the artifact's fixed
	// context, built for that model.
	Model     *model.Model
	Tokenizer *tokenizer.Tokenizer
	Context   *sparse.Context
	// Budget is the budget of requests that give none (0: dense).
	Budget float64
	// Chat renders chat requests; nil means the model has no chat template, and chat
	// requests are refused.
	Chat *chat.Template
	// ChatContext, if set, says the fixed context was built for chat (squeeze precompute
	// --chat): its text opens a conversation whose system message holds the context, and
	// a chat request is rendered around it, the client's system text after the context.
	// SetModels checks that Chat renders it as precompute did. Nil for a context of
	// plain text: a chat request's whole rendering follows it, after ChatJoin.
	ChatContext *ChatContext
	// ChatJoin is put between a context of plain text and a rendered conversation.
	ChatJoin string
	// Created is reported by /v1/models (zero: the time the model was added).
	Created time.Time
	// Predictor, if set, is the fixed context's early-exit predictor (the artifact's, see
	// format.Artifact.Predictor): greedy requests whose speculation mode allows early
	// drafts (auto, early) draft from an early layer with it, beside the context's
	// n-grams. SetModels checks it against Model.
	Predictor *earlyexit.Predictor
	// BlockShare is the number of distinct blocks the model's layers cycle through
	// (earlyexit.BlockShare, which also reads the GGUF's squeeze.block_share); below the
	// model's layer count, greedy requests whose speculation mode allows early drafts
	// (auto, early) decode with SPEED's pipelined form (earlyexit.Pipeline). 0: SetModels
	// detects byte-identical layers (earlyexit.BlockShare without the file).
	BlockShare int
	// ValueTypes, if set, are the datatypes of the fixed context's values per layer (a
	// quantized artifact's, format.KVLayer.Value), and ValueOutliers its outlier
	// fraction: with Config.KVAppendAfter, a request's values are quantized with them on
	// append (kvquant.Appender). Nil for a context stored in f16. SetModels checks them.
	ValueTypes    []kvquant.Datatype
	ValueOutliers float64

	ngram *speculate.NGram // the context's n-gram index, for speculation
}

// Config configures a Server. The zero value serves DefaultParallel requests at once on
// all cores, with no queue.
type Config struct {
	// Parallel is the number of requests that generate at once (0: DefaultParallel).
	Parallel int
	// Queue is the number of requests that may wait for a slot; more get 429.
	Queue int
	// Threads is the number of threads of all slots together (0: all cores); each slot
	// has a pool of max(1, Threads/Parallel).
	Threads int
	// MaxBodyBytes bounds a request body (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxTokens bounds a request's max_tokens, and is the value of requests that give
	// none (0: DefaultMaxTokens).
	MaxTokens int
	// RequestTokens bounds a request's prompt plus answer, its own KV cache (0: the
	// model's context length minus the fixed context's tokens, at least
	// MinRequestTokens).
	RequestTokens int
	// Cache is the storage type of the requests' KV caches.
	Cache model.CacheType
	// Speculate is the speculation mode of greedy requests that name none (the zero
	// value is speculate.ModeOff).
	Speculate speculate.Mode
	// KVAppendAfter, if not 0, quantizes the values of a request's older tokens on
	// append, on models with ValueTypes: once its KV cache holds KVAppendAfter +
	// decode.DefaultSpillBlock tokens, the oldest decode.DefaultSpillBlock move to its
	// session's tail with their values quantized, and the last KVAppendAfter (at least
	// decode.MinSpillAfter) always stay in the cache (decode.Spill). 0 keeps every token
	// of a request in its cache.
	KVAppendAfter int
	// Logger receives one line per request and the errors (nil: discard).
	Logger *slog.Logger
}

// Server answers the OpenAI-compatible API over a set of models. Create it with New,
// serve its Handler (or call Serve), then call SetModels once the models are loaded;
// until then /health answers 503. Shutdown stops it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	sched   *scheduler
	track   tracker

	mu     sync.RWMutex
	models map[string]*Model
	order  []string // model ids as given to SetModels
	ready  atomic.Bool

	// stop is cancelled when in-flight generations must end (Shutdown's deadline, Close).
	stop       context.Context
	cancelAll  context.CancelFunc
	httpMu     sync.Mutex
	httpServer *http.Server
	closeOnce  sync.Once

	// bodyTimeout is BodyTimeout (shorter in tests).
	bodyTimeout time.Duration
	// policy tunes the slots' speculation policies (tests make them draft at every pass).
	policy speculate.PolicyOptions
	// slotHook, if set (by tests), runs when a request has taken its slot and is about
	// to generate, with the generation's context.
	slotHook func(ctx context.Context)
}

// New returns a server with no models yet (not ready), its slots' thread pools started.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Parallel < 0:
		return nil, fmt.Errorf("server: parallel %d: want 0 (default) or more", cfg.Parallel)
	case cfg.Queue < 0:
		return nil, fmt.Errorf("server: queue %d: want 0 or more", cfg.Queue)
	case cfg.Threads < 0:
		return nil, fmt.Errorf("server: threads %d: want 0 (all cores) or more", cfg.Threads)
	case cfg.MaxBodyBytes < 0 || cfg.MaxTokens < 0 || cfg.RequestTokens < 0:
		return nil, errors.New("server: limits must not be negative")
	case cfg.KVAppendAfter != 0 && cfg.KVAppendAfter < decode.MinSpillAfter:
		return nil, fmt.Errorf("server: kv append after %d tokens: want 0 (off) or at least %d", cfg.KVAppendAfter, decode.MinSpillAfter)
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.Threads == 0 {
		cfg.Threads = runtime.NumCPU()
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxTokens == 0 {
		cfg.MaxTokens = DefaultMaxTokens
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(), models: map[string]*Model{}, bodyTimeout: BodyTimeout}
	s.sched = newScheduler(cfg.Parallel, cfg.Queue, max(1, cfg.Threads/cfg.Parallel))
	s.stop, s.cancelAll = context.WithCancel(context.Background())
	return s, nil
}

// SetModels installs the models and makes the server ready. Each model is checked: a
// unique non-empty id, a model, tokenizer and context that fit together, a usable
// default budget, and a chat context (ChatContext) that the model's chat template renders
// as it was precomputed.
func (s *Server) SetModels(models []*Model) error {
	if len(models) == 0 {
		return errors.New("server: no models")
	}
	byID := make(map[string]*Model, len(models))
	var order []string
	for _, m := range models {
		if m == nil || m.Model == nil || m.Tokenizer == nil || m.Context == nil {
			return errors.New("server: a model lacks its model, tokenizer or context")
		}
		if m.ID == "" || strings.ContainsAny(m.ID, " \t\r\n") {
			return fmt.Errorf("server: model id %q: want a non-empty id without spaces", m.ID)
		}
		if _, dup := byID[m.ID]; dup {
			return fmt.Errorf("server: two models have the id %q: give each its own name", m.ID)
		}
		if m.Model.Config.Vocab != m.Tokenizer.VocabSize() {
			return fmt.Errorf("server: model %s: %d embedding rows for %d tokens", m.ID, m.Model.Config.Vocab, m.Tokenizer.VocabSize())
		}
		if !(m.Budget >= 0) {
			return fmt.Errorf("server: model %s: budget %g", m.ID, m.Budget)
		}
		if m.Predictor != nil {
			if err := m.Predictor.Check(&m.Model.Config); err != nil {
				return fmt.Errorf("server: model %s: %w", m.ID, err)
			}
		}
		if m.ChatContext != nil {
			if err := checkChatContext(m); err != nil {
				return fmt.Errorf("server: %w", err)
			}
		}
		// A session checks the context against the model and the default budget.
		pool := kernels.NewPool(1)
		sess, err := sparse.NewSession(m.Context, m.Model, pool, m.defaultBudget())
		pool.Close()
		if err != nil {
			return fmt.Errorf("server: model %s: %w", m.ID, err)
		}
		if m.ValueTypes != nil {
			if _, err := kvquant.NewAppender(sess, m.Model, m.ValueTypes, m.ValueOutliers); err != nil {
				return fmt.Errorf("server: model %s: value datatypes: %w", m.ID, err)
			}
		}
		m.ngram = speculate.NewNGram(m.Context.Tokens, 0, 0)
		if m.BlockShare == 0 {
			if m.BlockShare, err = earlyexit.BlockShare(nil, m.Model); err != nil {
				return fmt.Errorf("server: model %s: %w", m.ID, err)
			}
		}
		if m.Created.IsZero() {
			m.Created = time.Now()
		}
		byID[m.ID] = m
		order = append(order, m.ID)
	}
	s.mu.Lock()
	s.models, s.order = byID, order
	s.mu.Unlock()
	s.ready.Store(true)
	s.log.Info("ready", "models", strings.Join(order, ","), "parallel", s.cfg.Parallel, "queue", s.cfg.Queue,
		"threads_per_slot", s.sched.threads)
	return nil
}

// defaultBudget is the budget of a request that gives none.
func (m *Model) defaultBudget() float64 {
	if m.Budget > 0 {
		return m.Budget
	}
	return 1
}

// requestTokens is the most prompt plus answer tokens a request to m may have.
func (s *Server) requestTokens(m *Model) int {
	if s.cfg.RequestTokens > 0 {
		return s.cfg.RequestTokens
	}
	return max(m.Model.Config.ContextLength-len(m.Context.Tokens), MinRequestTokens)
}

// Ready reports whether SetModels has run and the server is not shutting down.
func (s *Server) Ready() bool { return s.ready.Load() && !s.track.isClosed() }

// lookup returns the model a request names. An empty name picks the only model.
func (s *Server) lookup(name string) (*Model, *apiError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if name == "" {
		if len(s.order) == 1 {
			return s.models[s.order[0]], nil
		}
		return nil, badRequest("model", "model is required: one of %s", strings.Join(s.order, ", "))
	}
	m, ok := s.models[name]
	if !ok {
		return nil, &apiError{Status: http.StatusNotFound, Type: typeNotFound, Param: "model", Code: "model_not_found",
			Message: fmt.Sprintf("model %q does not exist: this server has %s (GET /v1/models)", name, strings.Join(s.order, ", "))}
	}
	return m, nil
}

// Serve accepts HTTP connections on ln until Shutdown or Close. It returns nil after a
// shutdown, or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.httpMu.Lock()
	if s.track.isClosed() {
		s.httpMu.Unlock()
		return nil
	}
	s.httpServer = hs
	s.httpMu.Unlock()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ErrCancelled is returned by Shutdown when in-flight requests had to be cancelled
// because its context ended first.
var ErrCancelled = errors.New("server: in-flight requests cancelled at shutdown")

// Shutdown stops the server gracefully: new generation requests get 503, the listener
// (if Serve runs) closes, and in-flight requests finish, until ctx ends; then the rest
// are cancelled (their clients get what was generated and an error) and waited for.
// The thread pools are released. It returns an error wrapping ErrCancelled if requests
// were cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	idle := s.track.close()
	s.httpMu.Lock()
	hs := s.httpServer
	s.httpMu.Unlock()
	done := make(chan struct{})
	go func() {
		if hs != nil {
			hs.Shutdown(ctx) // stops accepting; its wait ends with ctx or when connections close
		}
		close(done)
	}()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		n := s.track.count()
		s.cancelAll()
		<-idle
		if n > 0 {
			err = fmt.Errorf("%w: %d requests", ErrCancelled, n)
			s.log.Warn("shutdown: cancelled in-flight requests", "requests", n)
		}
	}
	if hs != nil {
		// Generation handlers have returned; close whatever connections remain.
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		hs.Close()
	}
	s.release()
	return err
}

// Close stops the server at once: in-flight generations are cancelled and waited for,
// connections closed, pools released.
func (s *Server) Close() error {
	idle := s.track.close()
	s.cancelAll()
	<-idle
	s.httpMu.Lock()
	hs := s.httpServer
	s.httpMu.Unlock()
	if hs != nil {
		hs.Close()
	}
	s.release()
	return nil
}

// release frees the thread pools once no generation runs.
func (s *Server) release() {
	s.closeOnce.Do(func() {
		s.cancelAll()
		s.sched.close()
	})
}

// tracker counts in-flight generation requests and refuses new ones once closed.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when closed and n reaches 0
}

// enter registers a request; false once the tracker is closed.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

// leave ends a request registered by enter.
func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.closed {
		t.signal()
	}
}

// close refuses new requests and returns a channel closed when none is in flight.
func (t *tracker) close() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	t.closed = true
	if t.n == 0 {
		t.signal()
	}
	return t.idle
}

// signal closes idle once (called with mu held).
func (t *tracker) signal() {
	select {
	case <-t.idle:
	default:
		close(t.idle)
	}
}

func (t *tracker) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Endpoint paths.
const (
	pathCompletions = "/v1/completions"
	pathChat        = "/v1/chat/completions"
	pathModels      = "/v1/models"
	pathHealth      = "/health"
	pathMetrics     = "/metrics"
)

// Handler returns the HTTP handler of the API: POST /v1/completions, POST
// /v1/chat/completions, GET /v1/models[/{id}], GET /health, GET /metrics (and the same
// without /v1 where llama.cpp accepts that).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// route returns the endpoint label of a path, its allowed method and handler.
func (s *Server) route(path string) (endpoint, method string, h func(*responseWriter, *http.Request, *reqInfo)) {
	switch path {
	case pathCompletions, "/completions":
		return pathCompletions, http.MethodPost, s.handleCompletion
	case pathChat, "/chat/completions":
		return pathChat, http.MethodPost, s.handleChat
	case pathModels, "/models":
		return pathModels, http.MethodGet, s.handleModels
	case pathHealth, "/v1/health":
		return pathHealth, http.MethodGet, s.handleHealth
	case pathMetrics:
		return pathMetrics, http.MethodGet, s.handleMetrics
	}
	if id, ok := strings.CutPrefix(path, pathModels+"/"); ok && id != "" {
		return pathModels + "/{id}", http.MethodGet, s.handleModel
	}
	return "other", "", nil
}

// reqInfo is what the middleware knows about a request, for the handlers and the log.
type reqInfo struct {
	id      string
	arrival time.Time
	model   string
	// attrs are logged with the request's line.
	attrs []any
}

// serveHTTP routes, times, counts and logs a request, and turns a panic into a 500.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	info := &reqInfo{id: newRequestID(), arrival: time.Now()}
	rw := &responseWriter{ResponseWriter: w}
	rw.Header().Set("X-Request-Id", info.id)
	endpoint, method, h := s.route(r.URL.Path)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "request_id", info.id, "path", r.URL.Path, "panic", fmt.Sprint(p),
				"stack", string(debug.Stack()))
			if !rw.wrote {
				writeError(rw, &apiError{Status: http.StatusInternalServerError, Type: typeServer,
					Message: "internal error (request id " + info.id + ")"})
			}
			rw.failed = true
		}
		status := rw.status
		if status == 0 {
			status = http.StatusOK
		}
		if rw.clientGone {
			status = 499
		}
		s.metrics.request(endpoint, status)
		level := slog.LevelInfo
		if status >= 500 || rw.failed {
			level = slog.LevelError
		}
		if endpoint == pathHealth || endpoint == pathMetrics {
			level = slog.LevelDebug
		}
		attrs := append([]any{"request_id", info.id, "method", r.Method, "path", r.URL.Path, "status", status,
			"ms", time.Since(info.arrival).Milliseconds()}, info.attrs...)
		s.log.Log(context.Background(), level, "request", attrs...)
	}()
	switch {
	case h == nil:
		writeError(rw, &apiError{Status: http.StatusNotFound, Type: typeNotFound,
			Message: fmt.Sprintf("no endpoint %s: squeeze serves POST %s, POST %s, GET %s, GET %s and GET %s",
				r.URL.Path, pathCompletions, pathChat, pathModels, pathHealth, pathMetrics)})
	case r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead):
		rw.Header().Set("Allow", method)
		writeError(rw, &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest,
			Message: fmt.Sprintf("%s %s is not allowed: use %s", r.Method, endpoint, method)})
	default:
		h(rw, r, info)
	}
}

// responseWriter records the status and whether anything was written; it passes
// flushes through for streaming.
type responseWriter struct {
	http.ResponseWriter
	status     int
	wrote      bool
	clientGone bool // the client went away before the response was complete
	failed     bool // an internal error was logged
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client (http.Flusher).
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError sends buffered data to the client and reports a failure to (the client
// went away); http.ResponseController prefers it to Flush.
func (w *responseWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newRequestID returns a random 16-hex-digit request id.
func newRequestID() string {
	return fmt.Sprintf("%016x", rand.Uint64())
}

// randomSeed picks a sampling seed for a request that gives none.
func randomSeed() uint64 { return rand.Uint64() }
