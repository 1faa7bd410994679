package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startServe runs runServe in the background on a free loopback port and returns the
// server's URL, a function that stops it (as SIGTERM does) and returns runServe's
// error, and what it printed.
func startServe(t *testing.T, opts *serveOptions) (url string, stop func() error, out *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	opts.Addr = "127.0.0.1:0"
	opts.ready = func(u string) { ready <- u }
	out = &bytes.Buffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, opts, streams{In: strings.NewReader(""), Out: out, Err: io.Discard}) }()
	select {
	case url = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve ended before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve not ready after 60 s")
	}
	stopped := false
	var stopErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })
	return url, stop, out
}

// serveDefaults are the flag defaults of squeeze serve.
func serveDefaults() *serveOptions {
	return &serveOptions{Parallel: 2, Queue: 64, MaxTokensLimit: 2048, MaxBodyBytes: 1 << 20, ShutdownTimeout: 5 * time.Second,
		KVCache: "f16", Speculate: "auto", Threads: 2}
}

func TestServeArtifacts(t *testing.T) {
	isolate(t)
	_, art, tokens := askFixture(t)
	// A second artifact of the same model: the model file is loaded once.
	art2 := filepath.Join(filepath.Dir(art), "copy.sqz")
	b, err := os.ReadFile(art)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(art2, b, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := serveDefaults()
	opts.Artifacts, opts.JSON = []string{art, art2}, true
	url, stop, out := startServe(t, opts)

	var ready serveReady
	if err := json.Unmarshal(out.Bytes(), &ready); err != nil || ready.URL != url || strings.Join(ready.Models, ",") != "ctx,copy" {
		t.Fatalf("ready line %q (%v)", out.String(), err)
	}
	resp, err := http.Get(url + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(url+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"copy","prompt":"\nwhere is the fox","max_tokens":5,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
		Squeeze struct {
			ContextTokens int     `json:"context_tokens"`
			Budget        float64 `json:"budget"`
		} `json:"squeeze"`
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("completion: %d %s", resp.StatusCode, body)
	}
	if len(r.Choices) != 1 || r.Usage.CompletionTokens == 0 || r.Squeeze.ContextTokens != len(tokens) || r.Squeeze.Budget != 0.5 {
		t.Fatalf("completion %s", body)
	}
	// The synthetic model has no chat template.
	resp, err = http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"ctx","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "no chat template") {
		t.Fatalf("chat without template: %d %s", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func TestServeBadArtifacts(t *testing.T) {
	isolate(t)
	_, art, _ := askFixture(t)
	b, err := os.ReadFile(art)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.sqz")
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	corrupt := filepath.Join(dir, "corrupt.sqz")
	c := bytes.Clone(b)
	c[len(c)/3] ^= 0xff
	os.WriteFile(corrupt, c, 0o644)
	notArtifact := filepath.Join(dir, "model.sqz")
	os.WriteFile(notArtifact, []byte("GGUF not an artifact"), 0o644)
	tests := []struct {
		name  string
		args  []string
		names []string
		code  int
		msg   string
	}{
		{"missing", []string{filepath.Join(dir, "nope.sqz")}, nil, exitModel, "nope.sqz"},
		{"truncated", []string{truncated}, nil, exitModel, "truncated.sqz"},
		{"corrupt", []string{corrupt}, nil, exitModel, "corrupt"},
		{"not an artifact", []string{notArtifact}, nil, exitModel, "not a squeeze artifact"},
		{"second one bad", []string{art, truncated}, nil, exitModel, "truncated.sqz"},
		{"duplicate ids", []string{art, art}, nil, exitUsage, "--name"},
		{"names count", []string{art}, []string{"a", "b"}, exitUsage, "one per artifact"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := serveDefaults()
			opts.Artifacts, opts.Names, opts.Addr = tc.args, tc.names, "127.0.0.1:0"
			err := runServe(context.Background(), opts, streams{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
			if code := exitCode(err); code != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("exit %d (%v), want %d with %q", code, err, tc.code, tc.msg)
			}
		})
	}
}

// TestServeShutdownUnderLoad stops the server (as SIGTERM does) while clients stream:
// runServe returns nil within the shutdown timeout, and every client gets either a whole
// answer or an orderly end (an error event or a 503), never a hang.
func TestServeShutdownUnderLoad(t *testing.T) {
	isolate(t)
	_, art, _ := askFixture(t)
	opts := serveDefaults()
	opts.Artifacts, opts.Parallel, opts.Queue, opts.ShutdownTimeout = []string{art}, 1, 8, 200*time.Millisecond
	url, stop, _ := startServe(t, opts)
	const clients = 6
	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, clients)
	for range clients {
		go func() {
			resp, err := http.Post(url+"/v1/completions", "application/json",
				strings.NewReader(`{"prompt":"\nthe fox","max_tokens":400,"temperature":1,"stream":true}`))
			if err != nil {
				results <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, string(b), err}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the requests arrive
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("runServe after SIGTERM: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a 200ms timeout", d)
	}
	for range clients {
		select {
		case r := <-results:
			switch {
			case r.err != nil && r.status == 0: // refused or reset at the connection level
			case r.status == http.StatusOK && (strings.HasSuffix(r.body, "data: [DONE]\n\n") || strings.Contains(r.body, `"error"`)):
			case r.status == http.StatusServiceUnavailable:
			default:
				t.Errorf("client: status %d, err %v, body %q", r.status, r.err, r.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a client hangs after shutdown")
		}
	}
}

// TestServePredictor serves an artifact with an early-exit predictor: the server gets it
// (logged at load), and greedy answers are the same with early drafts as without
// speculation.
func TestServePredictor(t *testing.T) {
	isolate(t)
	model := tinyModel(t)
	art := filepath.Join(filepath.Dir(model), "ctx.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--model", model, "-o", art,
		"--window", "8", "--levels", "0.05,0.2", "--threads", "1", inputDir(t))
	if r.code != 0 {
		t.Fatalf("precompute: exit %d: %s", r.code, r.stderr)
	}
	var logs bytes.Buffer
	opts := serveDefaults()
	opts.Artifacts, opts.Logger = []string{art}, slog.New(slog.NewTextHandler(&logs, nil))
	url, stop, _ := startServe(t, opts)
	var texts []string
	for _, mode := range []string{"off", "early", "auto"} {
		resp, err := http.Post(url+"/v1/completions", "application/json",
			strings.NewReader(`{"prompt":"\nfunc A","max_tokens":12,"temperature":0,"speculate":"`+mode+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var c struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(body, &c); err != nil || resp.StatusCode != http.StatusOK || len(c.Choices) != 1 {
			t.Fatalf("speculate %s: %d %s", mode, resp.StatusCode, body)
		}
		texts = append(texts, c.Choices[0].Text)
	}
	if texts[1] != texts[0] || texts[2] != texts[0] {
		t.Fatalf("answers %q: speculation changed the text", texts)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "early_exit=true") {
		t.Fatalf("the load log does not report the artifact's predictor:\n%s", logs.String())
	}
}
