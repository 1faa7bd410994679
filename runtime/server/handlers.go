package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"squeeze/runtime/decode"
)

// Response bodies of the OpenAI API.
type (
	usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}

	// squeezeInfo is the "squeeze" extension of a final response or chunk: how the
	// request attended to the fixed context and how long it took.
	squeezeInfo struct {
		ContextTokens    int     `json:"context_tokens"`
		Budget           float64 `json:"budget"`
		Dense            bool    `json:"dense"`
		RealizedBudget   float64 `json:"realized_budget"`
		StopReason       string  `json:"stop_reason"`
		QueueMS          float64 `json:"queue_ms"`
		TTFTMS           float64 `json:"ttft_ms"`
		DecodeTokensPerS float64 `json:"decode_tokens_per_s"`
		Speculate        string  `json:"speculate"`
		Drafted          int     `json:"drafted"`
		Accepted         int     `json:"accepted"`
		KVAppended       int     `json:"kv_appended_tokens"`
	}

	completionResponse struct {
		ID      string             `json:"id"`
		Object  string             `json:"object"`
		Created int64              `json:"created"`
		Model   string             `json:"model"`
		Choices []completionChoice `json:"choices"`
		Usage   *usage             `json:"usage,omitempty"`
		Squeeze *squeezeInfo       `json:"squeeze,omitempty"`
	}

	completionChoice struct {
		Text         string  `json:"text"`
		Index        int     `json:"index"`
		Logprobs     any     `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	}

	chatResponse struct {
		ID      string       `json:"id"`
		Object  string       `json:"object"`
		Created int64        `json:"created"`
		Model   string       `json:"model"`
		Choices []chatChoice `json:"choices"`
		Usage   *usage       `json:"usage,omitempty"`
		Squeeze *squeezeInfo `json:"squeeze,omitempty"`
	}

	chatChoice struct {
		Index        int      `json:"index"`
		Message      *chatOut `json:"message,omitempty"`
		Delta        *chatOut `json:"delta,omitempty"`
		Logprobs     any      `json:"logprobs"`
		FinishReason *string  `json:"finish_reason"`
	}

	chatOut struct {
		Role    string  `json:"role,omitempty"`
		Content *string `json:"content,omitempty"`
	}
)

// finishReason maps a stop reason to OpenAI's finish_reason.
func finishReason(r decode.StopReason) string {
	switch r {
	case decode.StopMaxTokens, decode.StopContext:
		return "length"
	}
	return "stop"
}

// handleCompletion serves POST /v1/completions.
func (s *Server) handleCompletion(w *responseWriter, r *http.Request, info *reqInfo) {
	if !s.checkReady(w) {
		return
	}
	var req completionRequest
	if e := decodeBody(r, w, s.cfg.MaxBodyBytes, s.bodyTimeout, &req); e != nil {
		writeError(w, e)
		return
	}
	j, e := s.completionJob(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	s.respond(w, r, info, j, false)
}

// completionJob validates a completion request.
func (s *Server) completionJob(req *completionRequest) (*job, *apiError) {
	p, e := req.params()
	if e != nil {
		return nil, e
	}
	switch {
	case req.Echo != nil && *req.Echo:
		return nil, badRequest("echo", "echo is not supported: leave it out or false")
	case req.BestOf != nil && *req.BestOf != 1:
		return nil, badRequest("best_of", "best_of %d: only 1 is supported", *req.BestOf)
	case req.Logprobs != nil && *req.Logprobs != 0:
		return nil, badRequest("logprobs", "logprobs is not supported: leave it out or 0")
	case req.Suffix != nil && *req.Suffix != "":
		return nil, badRequest("suffix", "suffix is not supported: leave it out")
	}
	in, e := parsePrompt(req.Prompt)
	if e != nil {
		return nil, e
	}
	m, e := s.lookup(p.model)
	if e != nil {
		return nil, e
	}
	prompt := in.tokens
	if !in.isIDs {
		prompt = m.Tokenizer.EncodeWithSpecials(in.text, false, true)
	}
	return s.newJob(m, prompt, p, nil)
}

// handleChat serves POST /v1/chat/completions.
func (s *Server) handleChat(w *responseWriter, r *http.Request, info *reqInfo) {
	if !s.checkReady(w) {
		return
	}
	var req chatRequest
	if e := decodeBody(r, w, s.cfg.MaxBodyBytes, s.bodyTimeout, &req); e != nil {
		writeError(w, e)
		return
	}
	j, e := s.chatJob(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	s.respond(w, r, info, j, true)
}

// chatJob validates a chat request and renders its conversation.
func (s *Server) chatJob(req *chatRequest) (*job, *apiError) {
	if req.MaxCompletionTokens != nil {
		req.MaxTokens = req.MaxCompletionTokens
	}
	p, e := req.params()
	if e != nil {
		return nil, e
	}
	switch {
	case req.Logprobs != nil && *req.Logprobs:
		return nil, badRequest("logprobs", "logprobs is not supported: leave it out or false")
	case !isNull(req.Tools) && string(req.Tools) != "[]":
		return nil, badRequest("tools", "tools are not supported: leave them out")
	case req.ResponseFormat != nil && req.ResponseFormat.Type != "" && req.ResponseFormat.Type != "text":
		return nil, badRequest("response_format", "response_format %q is not supported: only text", req.ResponseFormat.Type)
	}
	msgs, e := parseMessages(req.Messages)
	if e != nil {
		return nil, e
	}
	m, e := s.lookup(p.model)
	if e != nil {
		return nil, e
	}
	if m.Chat == nil {
		return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "model", Code: "no_chat_template",
			Message: fmt.Sprintf("model %s has no chat template (its GGUF has no tokenizer.chat_template): use /v1/completions", m.ID)}
	}
	prompt, e := chatTokens(m, msgs)
	if e != nil {
		return nil, e
	}
	return s.newJob(m, prompt, p, m.Chat.Stop())
}

// checkReady answers 503 until the models are loaded.
func (s *Server) checkReady(w *responseWriter) bool {
	if s.ready.Load() {
		return true
	}
	writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "loading", RetryAfter: 1,
		Message: "the server is loading its models: retry shortly"})
	return false
}

// respond runs a job and writes its response: one JSON object, or server-sent events
// when the request asked to stream.
func (s *Server) respond(w *responseWriter, r *http.Request, info *reqInfo, j *job, chat bool) {
	if !s.track.enter() {
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "shutting_down",
			Message: "the server is shutting down: send the request to another instance or retry later"})
		return
	}
	defer s.track.leave()
	// Generation ends when the client goes away or the server must stop.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()

	info.model = j.m.ID
	created := info.arrival.Unix()
	id := "cmpl-" + info.id
	if chat {
		id = "chatcmpl-" + info.id
	}
	// chunk builds a response or stream chunk with one choice.
	chunk := func(text *string, finish *string, final bool) any {
		if chat {
			c := chatChoice{FinishReason: finish}
			out := &chatOut{Content: text}
			if final && !j.p.stream {
				out.Role = "assistant"
				c.Message = out
			} else {
				c.Delta = out
			}
			return &chatResponse{ID: id, Object: objectName(chat, j.p.stream), Created: created, Model: j.m.ID, Choices: []chatChoice{c}}
		}
		c := completionChoice{FinishReason: finish}
		if text != nil {
			c.Text = *text
		}
		return &completionResponse{ID: id, Object: objectName(chat, j.p.stream), Created: created, Model: j.m.ID, Choices: []completionChoice{c}}
	}

	var sse *sseWriter
	var started func()
	var onText func(string) error
	if j.p.stream {
		sse = &sseWriter{w: w}
		started = func() {
			sse.start()
			if chat {
				empty := ""
				first := chunk(&empty, nil, false).(*chatResponse)
				first.Choices[0].Delta.Role = "assistant"
				sse.event(first)
			}
		}
		onText = func(text string) error { return sse.event(chunk(&text, nil, false)) }
	}
	o, err := s.run(ctx, j, info.arrival, started, onText)
	info.attrs = append(info.attrs, "model", j.m.ID, "prompt_tokens", len(j.prompt), "completion_tokens", len(o.res.Tokens),
		"stop", o.res.StopReason, "queue_ms", o.queue.Milliseconds(), "ttft_ms", o.ttft.Milliseconds(),
		"realized_budget", round3(o.realized()))
	if err != nil {
		s.fail(w, r, info, sse, err)
		return
	}

	u := &usage{PromptTokens: o.res.PromptTokens, CompletionTokens: len(o.res.Tokens), TotalTokens: o.res.PromptTokens + len(o.res.Tokens)}
	ext := &squeezeInfo{
		ContextTokens: len(j.m.Context.Tokens), Budget: o.budget, Dense: o.dense, RealizedBudget: round3(o.realized()),
		StopReason: string(o.res.StopReason), QueueMS: ms(o.queue), TTFTMS: ms(o.ttft),
		DecodeTokensPerS: round3(o.res.DecodeTokensPerSecond()), Speculate: o.speculation(j.spec),
		Drafted: o.res.Speculation.Drafted, Accepted: o.res.Speculation.Accepted,
		KVAppended: o.appended,
	}
	finish := finishReason(o.res.StopReason)
	if sse == nil {
		resp := chunk(&o.res.Text, &finish, true)
		switch x := resp.(type) {
		case *chatResponse:
			x.Usage, x.Squeeze = u, ext
		case *completionResponse:
			x.Usage, x.Squeeze = u, ext
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	last := chunk(nil, &finish, false)
	if c, ok := last.(*completionResponse); ok {
		c.Squeeze = ext
	} else {
		last.(*chatResponse).Squeeze = ext
	}
	sse.event(last)
	if j.p.includeUsage {
		var tail any
		if chat {
			tail = &chatResponse{ID: id, Object: objectName(chat, true), Created: created, Model: j.m.ID, Choices: []chatChoice{}, Usage: u}
		} else {
			tail = &completionResponse{ID: id, Object: objectName(chat, true), Created: created, Model: j.m.ID, Choices: []completionChoice{}, Usage: u}
		}
		sse.event(tail)
	}
	sse.done()
	if sse.err != nil {
		w.clientGone = true
	}
}

// fail answers a request whose generation did not finish: the queue was full, the
// client went away, the server is stopping, or something broke.
func (s *Server) fail(w *responseWriter, r *http.Request, info *reqInfo, sse *sseWriter, err error) {
	var e *apiError
	switch {
	case errors.Is(err, errQueueFull):
		e = &apiError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "queue_full", RetryAfter: s.retryAfter(),
			Message: fmt.Sprintf("all %d generation slots are busy and %d requests are queued: retry later", len(s.sched.slots), s.sched.maxWait)}
	case r.Context().Err() != nil || (sse != nil && sse.err != nil):
		w.clientGone = true
		return
	case s.stop.Err() != nil:
		e = &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "shutting_down",
			Message: "the server shut down before the answer was complete"}
	default:
		w.failed = true
		s.log.Error("generation failed", "request_id", info.id, "model", info.model, "err", err)
		e = &apiError{Status: http.StatusInternalServerError, Type: typeServer,
			Message: "internal error while generating (request id " + info.id + ")"}
	}
	if sse != nil && sse.started {
		sse.event(e.body()) // the status line is gone: the error travels as an event
		return
	}
	writeError(w, e)
}

// objectName is the "object" of a response or stream chunk.
func objectName(chat, stream bool) string {
	switch {
	case chat && stream:
		return "chat.completion.chunk"
	case chat:
		return "chat.completion"
	}
	return "text_completion"
}

// sseWriter writes server-sent events: "data: <JSON>" lines, flushed one by one.
type sseWriter struct {
	w       *responseWriter
	started bool
	err     error // the first write error: the client is gone
}

// start sends the response header.
func (s *sseWriter) start() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	s.started = true
	s.flush()
}

// event sends v as one data event.
func (s *sseWriter) event(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.write(append(append([]byte("data: "), b...), '\n', '\n'))
}

// done ends the stream as OpenAI does.
func (s *sseWriter) done() { s.write([]byte("data: [DONE]\n\n")) }

func (s *sseWriter) write(b []byte) error {
	if s.err != nil {
		return s.err
	}
	if !s.started {
		s.start()
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	return s.flush()
}

func (s *sseWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	if err := http.NewResponseController(s.w).Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// handleModels serves GET /v1/models.
func (s *Server) handleModels(w *responseWriter, r *http.Request, _ *reqInfo) {
	s.mu.RLock()
	list := modelList{Object: "list", Data: []modelEntry{}}
	for _, id := range s.order {
		list.Data = append(list.Data, s.entry(s.models[id]))
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, list)
}

// handleModel serves GET /v1/models/{id}.
func (s *Server) handleModel(w *responseWriter, r *http.Request, _ *reqInfo) {
	id := strings.TrimPrefix(r.URL.Path, pathModels+"/")
	m, e := s.lookup(id)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, s.entry(m))
}

type modelList struct {
	Object string       `json:"object"`
	Data   []modelEntry `json:"data"`
}

type modelEntry struct {
	ID      string    `json:"id"`
	Object  string    `json:"object"`
	Created int64     `json:"created"`
	OwnedBy string    `json:"owned_by"`
	Squeeze modelMeta `json:"squeeze"`
}

// modelMeta is the "squeeze" extension of a model entry.
type modelMeta struct {
	ContextTokens int       `json:"context_tokens"`
	RequestTokens int       `json:"request_tokens"`
	Budget        float64   `json:"budget"`
	Budgets       []float64 `json:"budgets"`
	ChatTemplate  bool      `json:"chat_template"`
}

func (s *Server) entry(m *Model) modelEntry {
	meta := modelMeta{ContextTokens: len(m.Context.Tokens), RequestTokens: s.requestTokens(m), Budget: m.defaultBudget(),
		Budgets: []float64{}, ChatTemplate: m.Chat != nil}
	for _, t := range m.Context.Thresholds {
		meta.Budgets = append(meta.Budgets, t.Budget)
	}
	return modelEntry{ID: m.ID, Object: "model", Created: m.Created.Unix(), OwnedBy: "squeeze", Squeeze: meta}
}

// handleHealth serves GET /health: 200 when ready, 503 while loading or stopping.
func (s *Server) handleHealth(w *responseWriter, _ *http.Request, _ *reqInfo) {
	switch {
	case s.track.isClosed():
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "shutting_down",
			Message: "the server is shutting down"})
	case !s.ready.Load():
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "loading", RetryAfter: 1,
			Message: "the server is loading its models"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// handleMetrics serves GET /metrics in the Prometheus text format.
func (s *Server) handleMetrics(w *responseWriter, _ *http.Request, info *reqInfo) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	g := gauges{ready: s.Ready(), queued: int(s.sched.waiting.Load()), inFlight: int(s.sched.inFlight.Load()),
		slots: len(s.sched.slots), queueLimit: int(s.sched.maxWait)}
	if err := s.metrics.write(w, g); err != nil {
		info.attrs = append(info.attrs, "err", err)
	}
}

// ms is a duration in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round3 rounds to three decimals for reports.
func round3(x float64) float64 {
	const k = 1000
	if math.IsNaN(x) {
		return 0
	}
	return float64(int64(x*k+0.5)) / k
}
