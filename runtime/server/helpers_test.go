package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"squeeze/precompute"
	"squeeze/runtime/chat"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sparse"
	"squeeze/runtime/tokenizer"
)

// chatMLTemplate is a ChatML chat template, as Qwen-style GGUFs carry it.
const chatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// contextText is the fixed context of the test models.
const contextText = "the quick brown fox jumps over the lazy dog while a slow green turtle " +
	"watches from the river bank and counts the clouds that pass above the hills. " +
	"the fox asks the turtle why it counts the clouds, and the turtle says that every cloud " +
	"is a story about the sea and the mountains and the wind that carries it home.\n"

// fixture is a tiny synthetic model with a ChatML template and a squeezed context of
// contextText, shared by the tests (the file stays open until TestMain ends).
var fixture struct {
	once  sync.Once
	err   error
	f     *gguf.File
	m     *model.Model
	tok   *tokenizer.Tokenizer
	tmpl  *chat.Template
	model *Model // the squeezed context, with a chat template
}

// TestMain removes the fixture's files at the end.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "squeeze-server-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	if fixture.f != nil {
		fixture.f.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var fixtureDir string

// testSpec is the tiny model of the tests.
var testSpec = modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Context: 1024, Tokenizer: true, Seed: 3,
	Meta: map[string]any{chat.KeyTemplate: chatMLTemplate}}

// loadFixture builds the fixture once.
func loadFixture(tb testing.TB) {
	tb.Helper()
	fixture.once.Do(func() { fixture.err = buildFixture() })
	if fixture.err != nil {
		tb.Fatal(fixture.err)
	}
}

func buildFixture() error {
	path := filepath.Join(fixtureDir, "tiny.gguf")
	if err := modeltest.Write(path, testSpec); err != nil {
		return err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	fixture.f = f
	if fixture.m, err = model.Load(f); err != nil {
		return err
	}
	if fixture.tok, err = tokenizer.FromGGUF(f); err != nil {
		return err
	}
	if fixture.tmpl, err = chat.FromGGUF(f); err != nil {
		return err
	}
	ctx, err := squeezeContext(fixture.m, f, fixture.tok)
	if err != nil {
		return err
	}
	fixture.model = &Model{ID: "tiny", Model: fixture.m, Tokenizer: fixture.tok, Context: ctx, Budget: 0.3,
		Chat: fixture.tmpl, ChatJoin: ""}
	return nil
}

// squeezeContext squeezes contextText for model m (file f, tokenizer tok) as the
// fixture's context is built: two tree levels, a window of 8, budget 0.3.
func squeezeContext(m *model.Model, f *gguf.File, tok *tokenizer.Tokenizer) (*sparse.Context, error) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	sq, err := precompute.Squeeze(context.Background(), m, f, pool, tok.Encode(contextText, true),
		precompute.SqueezeOptions{Fractions: []float64{0.1, 0.3}, Window: 8, Budget: 0.3, Budgets: []float64{0.2, 0.5}, Seed: 1})
	if err != nil {
		return nil, err
	}
	return sq.Context, nil
}

// newTestServer starts a server over the fixture (and a copy without a chat template,
// "plain") with cfg, served by an httptest.Server; both stop when the test ends.
func newTestServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	loadFixture(t)
	if cfg.Threads == 0 {
		cfg.Threads = 2
	}
	withChat := *fixture.model
	plain := *fixture.model
	plain.ID, plain.Chat = "plain", nil
	s := newServer(t, cfg, &withChat, &plain)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close() // first: it cancels the requests ts.Close would wait for
		ts.Close()
	})
	return s, ts
}

// newServer returns a server with cfg serving models; it is closed when the test ends.
func newServer(tb testing.TB, cfg Config, models ...*Model) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.SetModels(models); err != nil {
		tb.Fatal(err)
	}
	return s
}

// serveLoopback runs s.Serve on a loopback port and returns its address and the channel
// that receives Serve's result.
func serveLoopback(tb testing.TB, s *Server) (string, <-chan error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	return ln.Addr().String(), served
}

// shutdown stops s gracefully, giving in-flight requests timeout to finish, and checks
// that Shutdown and Serve (whose result served receives) return no error.
func shutdown(tb testing.TB, s *Server, served <-chan error, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		tb.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		tb.Errorf("Serve: %v", err)
	}
}

// post sends body as JSON to path and returns the status, headers and body.
func post(t *testing.T, ts *httptest.Server, path, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := ts.Client().Post(ts.URL+path, "application/json", strings.NewReader(body))
	return response(t, resp, err)
}

// get fetches path.
func get(t *testing.T, ts *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := ts.Client().Get(ts.URL + path)
	status, _, b := response(t, resp, err)
	return status, b
}

// response reads a client call's response: the status, headers and body.
func response(t *testing.T, resp *http.Response, err error) (int, http.Header, []byte) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// sseEvents splits a server-sent-event body into its data payloads.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("stream line %q is not a data line", line)
		}
		events = append(events, data)
	}
	return events
}

// decodeError parses an OpenAI error body, failing the test if it is not one.
func decodeError(t *testing.T, body []byte) errorFields {
	t.Helper()
	var raw map[string]map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	e, ok := raw["error"]
	if !ok {
		t.Fatalf("error body %s has no error object", body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Fatalf("error body %s lacks %q", body, k)
		}
	}
	var b errorBody
	json.Unmarshal(body, &b)
	return b.Error
}
