package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzServer is a server over the fixture with small limits, so that requests the
// fuzzer makes valid generate a few tokens only.
func fuzzServer(f *testing.F) http.Handler {
	loadFixture(f)
	withChat, plain := *fixture.model, *fixture.model
	plain.ID, plain.Chat = "plain", nil
	s := newServer(f, Config{Threads: 1, Parallel: 1, Queue: 4, MaxTokens: 3, RequestTokens: 48, MaxBodyBytes: 8192}, &withChat, &plain)
	return s.Handler()
}

// checkResponse fails unless the response to a fuzzed body is a 2xx answer or a 4xx
// OpenAI error: never a 5xx.
func checkResponse(t *testing.T, rec *httptest.ResponseRecorder, body []byte) {
	if rec.Code >= 500 {
		t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.Bytes())
	}
	out := rec.Body.Bytes()
	if rec.Code >= 400 {
		var e errorBody
		if err := json.Unmarshal(out, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("status %d with a body that is not an OpenAI error: %q", rec.Code, out)
		}
		return
	}
	if rec.Header().Get("Content-Type") == "text/event-stream" {
		events := strings.Split(strings.TrimSpace(string(out)), "\n\n")
		if events[len(events)-1] != "data: [DONE]" {
			t.Fatalf("stream does not end with [DONE]: %q", out)
		}
		for _, ev := range events[:len(events)-1] {
			if !json.Valid([]byte(strings.TrimPrefix(ev, "data: "))) {
				t.Fatalf("event %q is not JSON", ev)
			}
		}
		return
	}
	if !json.Valid(out) {
		t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, out)
	}
}

func fuzzEndpoint(f *testing.F, path string, seeds []string) {
	h := fuzzServer(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, rec, body)
	})
}

func FuzzCompletionRequest(f *testing.F) {
	fuzzEndpoint(f, "/v1/completions", []string{
		`{"model":"tiny","prompt":"the fox","max_tokens":2,"temperature":0}`,
		`{"model":"plain","prompt":[1,2,3],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"tiny","prompt":["a"],"stop":["x","y"],"seed":-5,"top_p":0,"top_k":0,"min_p":1,"budget":0.2,"speculate":"ngram"}`,
		`{"model":"tiny","prompt":[[4,5]],"budget":1e308,"temperature":2,"repeat_penalty":10}`,
		`{"model":"tiny","prompt":"<|im_start|>\u0000\ud800","logprobs":0,"n":1,"best_of":1,"echo":false}`,
		`{"model":"tiny","prompt":-1}`, `{"prompt":{}}`, `{"model":null,"prompt":null}`, `{}`, `[]`, `null`, `"x"`, ``,
		`{"model":"tiny","prompt":"a","max_tokens":1e9}`, `{"model":"tiny","prompt":"a","stop":[null]}`,
	})
}

func FuzzChatRequest(f *testing.F) {
	fuzzEndpoint(f, "/v1/chat/completions", []string{
		`{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"temperature":0}`,
		`{"model":"tiny","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"}]}],"stream":true}`,
		`{"model":"tiny","messages":[{"role":"developer","content":null},{"role":"user","content":"x"},{"role":"assistant","content":"y"},{"role":"user","content":"z"}],"max_completion_tokens":1}`,
		`{"model":"plain","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"tiny","messages":[{"role":"user"}],"tools":[],"response_format":{"type":"text"},"logprobs":false}`,
		`{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`,
		`{"model":"tiny","messages":{}}`, `{"model":"tiny","messages":[1]}`, `{"messages":[{"role":7}]}`, `{`, `{}}`,
	})
}
