package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"squeeze/runtime/chat"
	"squeeze/runtime/decode"
	"squeeze/runtime/kernels"
	"squeeze/runtime/sparse"
)

// reference generates greedily what the server should answer: the same prompt tokens
// after the fixed context through a session of the same budget.
func reference(t *testing.T, prompt []int32, budget float64, maxTokens int, stop []string) decode.Result {
	t.Helper()
	pool := kernels.NewPool(2)
	defer pool.Close()
	m := fixture.model
	sess, err := sparse.NewSession(m.Context, m.Model, pool, budget)
	if err != nil {
		t.Fatal(err)
	}
	e := decode.Engine{Model: m.Model, Tokenizer: m.Tokenizer, Pool: pool}
	res, err := e.GenerateTokens(context.Background(), prompt, decode.Options{MaxTokens: maxTokens, Stop: stop,
		ContextLen: len(prompt) + maxTokens, Prefix: sess})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// chatPrompt is the query tokens of a chat conversation.
func chatPrompt(t *testing.T, msgs []chat.Message) []int32 {
	t.Helper()
	text, err := fixture.tmpl.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	return fixture.tok.EncodeWithSpecials(text, false, true)
}

func TestCompletion(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	const prompt = " and the turtle"
	status, h, body := post(t, ts, "/v1/completions", `{"model":"tiny","prompt":"`+prompt+`","max_tokens":8,"temperature":0}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if h.Get("Content-Type") != "application/json" || len(h.Get("X-Request-Id")) != 16 {
		t.Errorf("headers %v", h)
	}
	var r completionResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	tokens := fixture.tok.EncodeWithSpecials(prompt, false, true)
	want := reference(t, tokens, 0.3, 8, nil)
	if r.Object != "text_completion" || r.ID != "cmpl-"+h.Get("X-Request-Id") || r.Model != "tiny" || r.Created == 0 || len(r.Choices) != 1 {
		t.Fatalf("response %s", body)
	}
	c := r.Choices[0]
	if c.Text != viaJSON(want.Text) || c.FinishReason == nil || *c.FinishReason != finishReason(want.StopReason) {
		t.Fatalf("choice %+v, want text %q (%s)", c, want.Text, want.StopReason)
	}
	if r.Usage == nil || r.Usage.PromptTokens != len(tokens) || r.Usage.CompletionTokens != len(want.Tokens) ||
		r.Usage.TotalTokens != len(tokens)+len(want.Tokens) {
		t.Fatalf("usage %+v, want %d + %d", r.Usage, len(tokens), len(want.Tokens))
	}
	sq := r.Squeeze
	if sq == nil || sq.ContextTokens != len(fixture.model.Context.Tokens) || sq.Budget != 0.3 || sq.Dense ||
		!(sq.RealizedBudget > 0 && sq.RealizedBudget < 1) || sq.TTFTMS <= 0 {
		t.Fatalf("squeeze extension %+v", sq)
	}
	// The raw body has OpenAI's fields, logprobs null included.
	for _, key := range []string{`"logprobs":null`, `"finish_reason":"`, `"usage":{"prompt_tokens":`} {
		if !strings.Contains(string(body), key) {
			t.Errorf("body lacks %s: %s", key, body)
		}
	}

	// Token ids, budget 1 (dense) and a prompt array of one string.
	ids, _ := json.Marshal(tokens)
	for _, req := range []string{
		`{"model":"tiny","prompt":` + string(ids) + `,"max_tokens":8,"temperature":0,"budget":0.3}`,
		`{"model":"tiny","prompt":["` + prompt + `"],"max_tokens":8,"top_p":0}`,
	} {
		status, _, body = post(t, ts, "/v1/completions", req)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", req, status, body)
		}
		json.Unmarshal(body, &r)
		if r.Choices[0].Text != viaJSON(want.Text) {
			t.Fatalf("%s: text %q, want %q", req, r.Choices[0].Text, want.Text)
		}
	}
	status, _, body = post(t, ts, "/v1/completions", `{"model":"tiny","prompt":"`+prompt+`","max_tokens":8,"temperature":0,"budget":1}`)
	json.Unmarshal(body, &r)
	dense := reference(t, tokens, 1, 8, nil)
	if status != http.StatusOK || r.Choices[0].Text != viaJSON(dense.Text) || !r.Squeeze.Dense || r.Squeeze.RealizedBudget != 1 {
		t.Fatalf("dense: status %d %s", status, body)
	}
}

func TestSpeculate(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	const prompt = " the quick brown fox jumps over the lazy"
	want := reference(t, fixture.tok.EncodeWithSpecials(prompt, false, true), 0.3, 16, nil)
	for _, mode := range []string{"off", "ngram", "auto", "early"} {
		status, _, body := post(t, ts, "/v1/completions",
			`{"model":"tiny","prompt":"`+prompt+`","max_tokens":16,"temperature":0,"speculate":"`+mode+`"}`)
		var r completionResponse
		if err := json.Unmarshal(body, &r); status != http.StatusOK || err != nil {
			t.Fatalf("%s: status %d: %s", mode, status, body)
		}
		if r.Choices[0].Text != viaJSON(want.Text) || r.Squeeze.Speculate != mode {
			t.Fatalf("speculate %s: %q (%+v), want %q", mode, r.Choices[0].Text, r.Squeeze, want.Text)
		}
		if mode == "off" && r.Squeeze.Drafted != 0 {
			t.Fatalf("speculate off drafted %d tokens", r.Squeeze.Drafted)
		}
	}
}

func TestChatCompletion(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	status, _, body := post(t, ts, "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"system","content":"be brief"},`+
		`{"role":"user","content":[{"type":"text","text":"what does the turtle"},{"type":"text","text":" count?"}]}],"max_completion_tokens":6,"temperature":0}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var r chatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	prompt := chatPrompt(t, []chat.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "what does the turtle count?"}})
	want := reference(t, prompt, 0.3, 6, fixture.tmpl.Stop())
	if r.Object != "chat.completion" || !strings.HasPrefix(r.ID, "chatcmpl-") || len(r.Choices) != 1 {
		t.Fatalf("response %s", body)
	}
	msg := r.Choices[0].Message
	if msg == nil || msg.Role != "assistant" || msg.Content == nil || *msg.Content != viaJSON(want.Text) || r.Choices[0].Delta != nil {
		t.Fatalf("message %s, want %q", body, want.Text)
	}
	if r.Usage.PromptTokens != len(prompt) || r.Usage.CompletionTokens != len(want.Tokens) {
		t.Fatalf("usage %+v, want %d prompt tokens", r.Usage, len(prompt))
	}
}

func TestStreaming(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	tests := []struct {
		name, path, body string
		chat             bool
	}{
		{"completion", "/v1/completions", `{"model":"tiny","prompt":" the fox","max_tokens":10,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`, false},
		{"chat", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":10,"temperature":0,"stream":true}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := post(t, ts, tc.path, tc.body)
			if status != http.StatusOK || h.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, headers %v: %s", status, h, body)
			}
			events := sseEvents(t, body)
			if len(events) < 3 || events[len(events)-1] != "[DONE]" {
				t.Fatalf("events %q", events)
			}
			// The non-streamed answer of the same request.
			var plain map[string]any
			json.Unmarshal([]byte(tc.body), &plain)
			delete(plain, "stream")
			delete(plain, "stream_options")
			pb, _ := json.Marshal(plain)
			_, _, body2 := post(t, ts, tc.path, string(pb))

			var text strings.Builder
			var finish []string
			var usageSeen bool
			for i, ev := range events[:len(events)-1] {
				var c struct {
					ID      string `json:"id"`
					Object  string `json:"object"`
					Choices []struct {
						Text  *string `json:"text"`
						Delta *struct {
							Role    string  `json:"role"`
							Content *string `json:"content"`
						} `json:"delta"`
						FinishReason *string `json:"finish_reason"`
					} `json:"choices"`
					Usage *usage `json:"usage"`
				}
				if err := json.Unmarshal([]byte(ev), &c); err != nil {
					t.Fatalf("event %d %q: %v", i, ev, err)
				}
				wantObject := "text_completion"
				if tc.chat {
					wantObject = "chat.completion.chunk"
				}
				if c.Object != wantObject || c.ID == "" {
					t.Fatalf("event %d: %s", i, ev)
				}
				if c.Usage != nil {
					usageSeen = true
					if len(c.Choices) != 0 || c.Usage.CompletionTokens == 0 {
						t.Fatalf("usage event %s", ev)
					}
					continue
				}
				if len(c.Choices) != 1 {
					t.Fatalf("event %d: %s", i, ev)
				}
				ch := c.Choices[0]
				if tc.chat {
					if i == 0 && ch.Delta.Role != "assistant" {
						t.Fatalf("first chat chunk has no role: %s", ev)
					}
					if ch.Delta.Content != nil {
						text.WriteString(*ch.Delta.Content)
					}
				} else if ch.Text != nil {
					text.WriteString(*ch.Text)
				}
				if ch.FinishReason != nil {
					finish = append(finish, *ch.FinishReason)
				}
			}
			if len(finish) != 1 || usageSeen != !tc.chat {
				t.Fatalf("finish reasons %q, usage %v: %q", finish, usageSeen, events)
			}
			var want string
			if tc.chat {
				var r chatResponse
				json.Unmarshal(body2, &r)
				want = *r.Choices[0].Message.Content
			} else {
				var r completionResponse
				json.Unmarshal(body2, &r)
				want = r.Choices[0].Text
			}
			if text.String() != want {
				t.Fatalf("streamed %q, non-streamed %q", text.String(), want)
			}
		})
	}
}

func TestStop(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	prompt := fixture.tok.EncodeWithSpecials(" the clouds", false, true)
	full := reference(t, prompt, 0.3, 24, nil)
	if len(full.Text) < 6 {
		t.Skipf("the synthetic model's answer %q is too short to cut", full.Text)
	}
	// A stop string of two printable ASCII bytes from past the answer's start.
	cut := -1
	for i := 2; i+1 < len(full.Text); i++ {
		if printable(full.Text[i]) && printable(full.Text[i+1]) {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Skipf("the synthetic model's answer %q has no ASCII to cut at", full.Text)
	}
	stop := full.Text[cut : cut+2]
	want := viaJSON(full.Text[:strings.Index(full.Text, stop)])
	for _, field := range []string{`"` + stop + `"`, `["zzzz-none","` + stop + `"]`} {
		body := fmt.Sprintf(`{"model":"tiny","prompt":" the clouds","max_tokens":24,"temperature":0,"stop":%s}`, field)
		status, _, b := post(t, ts, "/v1/completions", body)
		var r completionResponse
		if err := json.Unmarshal(b, &r); status != http.StatusOK || err != nil {
			t.Fatalf("status %d: %s", status, b)
		}
		if r.Choices[0].Text != want || *r.Choices[0].FinishReason != "stop" || r.Squeeze.StopReason != "stop" {
			t.Fatalf("stop %s: %q (%s), want %q", field, r.Choices[0].Text, *r.Choices[0].FinishReason, want)
		}
	}
}

func TestErrors(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxTokens: 64, RequestTokens: 100, MaxBodyBytes: 4096})
	long := strings.Repeat("the fox and the dog ", 60)
	medium := "fox"
	for len(fixture.tok.EncodeWithSpecials(medium, false, true)) < 45 {
		medium += " fox"
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		typ, param, msg          string
	}{
		{"malformed JSON", "POST", "/v1/completions", `{"prompt": "a",`, 400, typeInvalidRequest, "", "malformed JSON"},
		{"syntax error", "POST", "/v1/completions", `{"prompt" "a"}`, 400, typeInvalidRequest, "", "malformed JSON at byte"},
		{"empty body", "POST", "/v1/completions", ``, 400, typeInvalidRequest, "", "empty"},
		{"not an object", "POST", "/v1/completions", `[1,2]`, 400, typeInvalidRequest, "", "JSON object"},
		{"trailing data", "POST", "/v1/completions", `{"prompt":"a"} {}`, 400, typeInvalidRequest, "", "after the object"},
		{"wrong type", "POST", "/v1/completions", `{"prompt":"a","max_tokens":"ten"}`, 400, typeInvalidRequest, "max_tokens", "an integer"},
		{"no prompt", "POST", "/v1/completions", `{"model":"tiny"}`, 400, typeInvalidRequest, "prompt", "prompt is required"},
		{"two prompts", "POST", "/v1/completions", `{"model":"tiny","prompt":["a","b"]}`, 400, typeInvalidRequest, "prompt", "one prompt per request"},
		{"empty prompt", "POST", "/v1/completions", `{"model":"tiny","prompt":""}`, 400, typeInvalidRequest, "prompt", "empty"},
		{"bad token id", "POST", "/v1/completions", `{"model":"tiny","prompt":[1,99999]}`, 400, typeInvalidRequest, "prompt", "outside the vocabulary"},
		{"model required", "POST", "/v1/completions", `{"prompt":"a"}`, 400, typeInvalidRequest, "model", "model is required"},
		{"unknown model", "POST", "/v1/completions", `{"model":"gpt-4","prompt":"a"}`, 404, typeNotFound, "model", `"gpt-4" does not exist`},
		{"prompt too long", "POST", "/v1/completions", `{"model":"tiny","prompt":"` + long + `"}`, 400, typeInvalidRequest, "prompt", "shorten the prompt"},
		{"max_tokens over room", "POST", "/v1/completions", `{"model":"tiny","prompt":"` + medium + `","max_tokens":60}`, 400, typeInvalidRequest, "max_tokens", "lower max_tokens"},
		{"max_tokens over limit", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","max_tokens":65}`, 400, typeInvalidRequest, "max_tokens", "limit of 64"},
		{"max_tokens zero", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","max_tokens":0}`, 400, typeInvalidRequest, "max_tokens", "1 or more"},
		{"temperature", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","temperature":3}`, 400, typeInvalidRequest, "temperature", "0 (greedy) to 2"},
		{"top_p", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","top_p":1.5}`, 400, typeInvalidRequest, "top_p", "from 0 to 1"},
		{"top_k", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","top_k":-1}`, 400, typeInvalidRequest, "top_k", "0 (all tokens)"},
		{"n", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","n":2}`, 400, typeInvalidRequest, "n", "only 1"},
		{"stop type", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","stop":5}`, 400, typeInvalidRequest, "stop", "string or an array"},
		{"too many stops", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]}`, 400, typeInvalidRequest, "stop", "at most 16"},
		{"budget", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","budget":-1}`, 400, typeInvalidRequest, "budget", "> 0"},
		{"budget too low", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","budget":0.01}`, 400, typeInvalidRequest, "budget", "smallest budget"},
		{"speculate", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","speculate":"fast"}`, 400, typeInvalidRequest, "speculate", "want one of"},
		{"penalty", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","presence_penalty":0.5}`, 400, typeInvalidRequest, "presence_penalty", "not supported"},
		{"echo", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","echo":true}`, 400, typeInvalidRequest, "echo", "not supported"},
		{"stream_options alone", "POST", "/v1/completions", `{"model":"tiny","prompt":"a","stream_options":{"include_usage":true}}`, 400, typeInvalidRequest, "stream_options", "stream: true"},
		{"body too large", "POST", "/v1/completions", `{"model":"tiny","prompt":"` + strings.Repeat("x", 5000) + `"}`, 413, typeInvalidRequest, "", "larger than 4096 bytes"},
		{"no messages", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[]}`, 400, typeInvalidRequest, "messages", "non-empty array"},
		{"bad role", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"tool","content":"x"}]}`, 400, typeInvalidRequest, "messages[0].role", "want system"},
		{"image part", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, typeInvalidRequest, "messages[0].content", "only text"},
		{"bad order", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}`, 0, typeInvalidRequest, "", ""},
		{"no template", "POST", "/v1/chat/completions", `{"model":"plain","messages":[{"role":"user","content":"hi"}]}`, 400, typeInvalidRequest, "model", "use /v1/completions"},
		{"tools", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}`, 400, typeInvalidRequest, "tools", "not supported"},
		{"unknown path", "GET", "/v1/embeddings", ``, 404, typeNotFound, "", "no endpoint"},
		{"wrong method", "GET", "/v1/completions", ``, 405, typeInvalidRequest, "", "use POST"},
		{"unknown model entry", "GET", "/v1/models/nope", ``, 404, typeNotFound, "model", "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.status == 0 { // any 2xx or 4xx, never a 5xx
				if resp.StatusCode >= 500 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			e := decodeError(t, body)
			param := ""
			if e.Param != nil {
				param = *e.Param
			}
			if e.Type != tc.typ || param != tc.param || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error %s\nwant type %s, param %q, message with %q", body, tc.typ, tc.param, tc.msg)
			}
		})
	}
}

func TestModelsAndHealth(t *testing.T) {
	loadFixture(t)
	s, err := New(Config{Threads: 1, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	// Before SetModels: loading.
	status, body := get(t, ts, "/health")
	if status != http.StatusServiceUnavailable || decodeError(t, body).Code == nil {
		t.Fatalf("health while loading: %d %s", status, body)
	}
	status, hdr, body := post(t, ts, "/v1/completions", `{"prompt":"a"}`)
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("completion while loading: %d %s", status, body)
	}
	m := *fixture.model
	if err := s.SetModels([]*Model{&m}); err != nil {
		t.Fatal(err)
	}
	if status, body = get(t, ts, "/health"); status != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("health: %d %s", status, body)
	}
	status, body = get(t, ts, "/v1/models")
	var list modelList
	if err := json.Unmarshal(body, &list); status != http.StatusOK || err != nil {
		t.Fatalf("models: %d %s", status, body)
	}
	if list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != "tiny" || list.Data[0].Object != "model" ||
		list.Data[0].OwnedBy == "" || !list.Data[0].Squeeze.ChatTemplate || list.Data[0].Squeeze.ContextTokens != len(m.Context.Tokens) ||
		list.Data[0].Squeeze.Budget != 0.3 || !slices.Contains(list.Data[0].Squeeze.Budgets, 0.2) {
		t.Fatalf("models: %s", body)
	}
	if status, body = get(t, ts, "/v1/models/tiny"); status != http.StatusOK || !strings.Contains(string(body), `"id":"tiny"`) {
		t.Fatalf("model: %d %s", status, body)
	}
	// Bad model sets.
	dup := m
	for _, bad := range [][]*Model{nil, {&m, &dup}, {{ID: "x"}}, {{ID: "a b", Model: m.Model, Tokenizer: m.Tokenizer, Context: m.Context}}} {
		s2, _ := New(Config{Threads: 1, Parallel: 1})
		if err := s2.SetModels(bad); err == nil {
			t.Errorf("SetModels(%d models) accepted a bad set", len(bad))
		}
		s2.Close()
	}
}

func TestMetrics(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	post(t, ts, "/v1/completions", `{"model":"tiny","prompt":" the fox","max_tokens":4,"temperature":0}`)
	post(t, ts, "/v1/completions", `{"model":"tiny","prompt":"x","temperature":9}`)
	status, body := get(t, ts, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	text := string(body)
	for _, want := range []string{
		`squeeze_requests_total{endpoint="/v1/completions",status="200"} 1`,
		`squeeze_requests_total{endpoint="/v1/completions",status="400"} 1`,
		`squeeze_prompt_tokens_total{model="tiny"} `,
		`squeeze_completion_tokens_total{model="tiny"} `,
		`squeeze_time_to_first_token_seconds_count 1`,
		`squeeze_time_to_first_token_seconds_bucket{le="+Inf"} 1`,
		`squeeze_time_per_output_token_seconds_count `,
		`squeeze_realized_budget_count 1`,
		`squeeze_queue_depth 0`,
		`squeeze_requests_in_flight 0`,
		`squeeze_ready 1`,
		"# TYPE squeeze_time_to_first_token_seconds histogram",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Every line is a comment or "name{labels} value", and buckets are cumulative.
	sample := regexp.MustCompile(`^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$`)
	last := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		if !sample.MatchString(line) {
			t.Fatalf("bad exposition line %q", line)
		}
		if name, _, ok := strings.Cut(line, "_bucket{"); ok {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			if v < last[name] {
				t.Fatalf("bucket %q below the previous one", line)
			}
			last[name] = v
		}
	}
}

func TestQueueFull(t *testing.T) {
	s, ts := newTestServer(t, Config{Parallel: 1, Queue: 1})
	hold := make(chan struct{})
	entered := make(chan struct{}, 4)
	s.slotHook = func(ctx context.Context) {
		entered <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	body := `{"model":"tiny","prompt":" the fox","max_tokens":2,"temperature":0}`
	results := make(chan int, 2)
	go func() { st, _, _ := post(t, ts, "/v1/completions", body); results <- st }()
	select { // the first request holds the slot
	case <-entered:
	case st := <-results:
		t.Fatalf("status %d", st)
	}
	go func() { st, _, _ := post(t, ts, "/v1/completions", body); results <- st }()
	waitFor(t, func() bool { return s.sched.waiting.Load() == 1 }) // the second one waits
	status, h, b := post(t, ts, "/v1/completions", body)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", status, h.Get("Retry-After"), b)
	}
	if e := decodeError(t, b); e.Type != typeRateLimit || e.Code == nil || *e.Code != "queue_full" {
		t.Fatalf("error %s", b)
	}
	_, mb := get(t, ts, "/metrics")
	if !strings.Contains(string(mb), "squeeze_queue_depth 1\n") || !strings.Contains(string(mb), "squeeze_requests_in_flight 1\n") {
		t.Errorf("metrics while full:\n%s", mb)
	}
	close(hold)
	for range 2 {
		if st := <-results; st != http.StatusOK {
			t.Fatalf("queued request: status %d", st)
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 10 s")
}

// printable reports whether b is a printable ASCII byte.
func printable(b byte) bool { return b >= 0x21 && b < 0x7f }

// viaJSON is s as a client reads it from JSON: invalid UTF-8 becomes U+FFFD.
func viaJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}

// stableGoroutines returns the goroutine count once it stops changing.
func stableGoroutines() int {
	n := runtime.NumGoroutine()
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// settleGoroutines waits until at most n goroutines run, and returns the count.
func settleGoroutines(n int) int {
	got := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); got > n && time.Now().Before(deadline); got = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	return got
}

func TestDisconnectCancels(t *testing.T) {
	s, ts := newTestServer(t, Config{Parallel: 1})
	// Warm up the connection machinery, then count.
	post(t, ts, "/v1/completions", `{"model":"tiny","prompt":"a","max_tokens":1}`)
	ts.Client().CloseIdleConnections()
	before := stableGoroutines()
	cancelled := make(chan struct{})
	s.slotHook = func(ctx context.Context) {
		<-ctx.Done() // returns only if the disconnect reaches the generation
		close(cancelled)
	}
	for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
		// With one slot and no queue, a request that arrives before the
		// previous one has given its slot back gets 429: wait for it.
		waitFor(t, func() bool { return s.sched.inFlight.Load() == 0 })
		cancelled = make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		body := `{"model":"tiny","stream":true,"max_tokens":50,"prompt":"the fox","messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+path, strings.NewReader(body))
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		cancel() // the client goes away mid-stream
		resp.Body.Close()
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			t.Fatal("the generation was not cancelled by the disconnect")
		}
	}
	waitFor(t, func() bool { return s.sched.inFlight.Load() == 0 && s.track.count() == 0 })
	ts.Client().CloseIdleConnections()
	if after := settleGoroutines(before); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
	_, mb := get(t, ts, "/metrics")
	if !strings.Contains(string(mb), `endpoint="/v1/chat/completions",status="499"} 1`) ||
		!strings.Contains(string(mb), `endpoint="/v1/completions",status="499"} 1`) {
		t.Errorf("metrics do not count the disconnects as 499:\n%s", mb)
	}
}

func TestDisconnectMidGeneration(t *testing.T) {
	_, ts := newTestServer(t, Config{Parallel: 1})
	post(t, ts, "/v1/completions", `{"model":"tiny","prompt":"a","max_tokens":1}`)
	ts.Client().CloseIdleConnections()
	before := stableGoroutines()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions",
		strings.NewReader(`{"model":"tiny","prompt":" the fox","stream":true,"max_tokens":400,"temperature":1,"seed":1}`))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil { // the first chunk arrived
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	ts.Client().CloseIdleConnections()
	if after := settleGoroutines(before); after > before {
		b := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, after, b[:runtime.Stack(b, true)])
	}
}

func TestSlowBody(t *testing.T) {
	loadFixture(t)
	m := *fixture.model
	s := newServer(t, Config{Threads: 1, Parallel: 1}, &m)
	s.bodyTimeout = 200 * time.Millisecond
	addr, _ := serveLoopback(t, s)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers promise 100 bytes; only 10 come.
	fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to a slow body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	s.slotHook = func(context.Context) { panic("boom") }
	status, h, body := post(t, ts, "/v1/completions", `{"prompt":"a","model":"tiny","max_tokens":2}`)
	e := decodeError(t, body)
	if status != http.StatusInternalServerError || e.Type != typeServer || !strings.Contains(e.Message, h.Get("X-Request-Id")) {
		t.Fatalf("status %d: %s", status, body)
	}
	s.slotHook = nil
	if status, _, body = post(t, ts, "/v1/completions", `{"prompt":"a","model":"tiny","max_tokens":2}`); status != http.StatusOK {
		t.Fatalf("after a panic: status %d: %s", status, body)
	}
	if s.sched.inFlight.Load() != 0 {
		t.Fatal("the panicking request kept its slot")
	}
}

func TestShutdown(t *testing.T) {
	loadFixture(t)
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			m := *fixture.model
			s := newServer(t, Config{Threads: 2, Parallel: 1}, &m)
			addr, served := serveLoopback(t, s)
			entered := make(chan struct{})
			s.slotHook = func(ctx context.Context) {
				close(entered)
				if graceful {
					waitFor(t, func() bool { return !s.Ready() }) // finish once shutdown began
				} else {
					<-ctx.Done() // never finishes by itself
				}
			}
			url := "http://" + addr
			type result struct {
				status int
				body   string
			}
			res := make(chan result, 1)
			go func() {
				resp, err := http.Post(url+"/v1/completions", "application/json",
					strings.NewReader(`{"prompt":" the fox","max_tokens":3,"temperature":0,"stream":true}`))
				if err != nil {
					res <- result{0, err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				res <- result{resp.StatusCode, string(b)}
			}()
			<-entered
			timeout := 300 * time.Millisecond // the forced case waits this long in vain
			if graceful {
				timeout = time.Minute // the request finishes once shutdown begins
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			err := s.Shutdown(ctx)
			r := <-res
			if graceful {
				if err != nil || r.status != http.StatusOK || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
					t.Fatalf("graceful: Shutdown %v, status %d, body %q", err, r.status, r.body)
				}
			} else {
				if !errors.Is(err, ErrCancelled) || strings.Contains(r.body, "[DONE]") || !strings.Contains(r.body, "shut down") {
					t.Fatalf("forced: Shutdown %v, status %d, body %q", err, r.status, r.body)
				}
			}
			if err := <-served; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if _, err := http.Get(url + "/health"); err == nil {
				t.Fatal("the listener is still open after Shutdown")
			}
		})
	}
}
