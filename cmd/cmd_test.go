package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/testfiles"
)

// demoModel returns the path of the demo model, or skips the test.
func demoModel(t *testing.T) string {
	t.Helper()
	path := filepath.Join(testfiles.Root(t), defaultModel)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("demo model absent (%v): it is a copy of ../shared/models/gocode-demo/gocode-demo.gguf", err)
	}
	return path
}

// isolate clears the environment that configures squeeze and points the default config
// location at an empty directory, which it returns.
func isolate(t *testing.T) string {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix+"_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	return dir
}

type cliResult struct {
	code        int
	stdout      string
	stderr      string
	generateRan *generateOptions // what runGenerate would have received, with a capturing runner
}

// runCLI runs squeeze with args. With capture, generate's work function is replaced by
// one that records its options.
func runCLI(t *testing.T, ctx context.Context, stdin string, capture bool, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	var res cliResult
	var run runners
	if capture {
		run.generate = func(_ context.Context, opts *generateOptions, _ streams) error {
			res.generateRan = opts
			return nil
		}
	}
	res.code = execute(ctx, args, streams{In: strings.NewReader(stdin), Out: &out, Err: &errb}, run)
	res.stdout, res.stderr = out.String(), errb.String()
	return res
}

func TestGenerateFlags(t *testing.T) {
	isolate(t)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o *generateOptions)
	}{
		{"defaults", []string{"generate", "hello"}, func(t *testing.T, o *generateOptions) {
			want := generateOptions{Model: defaultModel, Prompt: "hello", MaxTokens: 128, Temp: 0.8, TopK: 40, TopP: 0.95,
				MinP: 0.05, RepeatPenalty: 1, RepeatLastN: 64, Seed: -1, KVCache: "f16", HugePages: true}
			o.Logger = nil
			if o.Stop != nil || !equalOpts(*o, want) {
				t.Fatalf("options %+v\nwant %+v", *o, want)
			}
		}},
		{"every flag", []string{"generate", "--model", "m.gguf", "--max-tokens", "7", "--temp", "0", "--top-k", "3",
			"--top-p", "0.5", "--min-p", "0.1", "--repeat-penalty", "1.2", "--repeat-last-n", "8", "--seed", "42",
			"--stop", "a", "--stop", "\n\n", "--kv-cache", "f32", "--ctx-size", "256", "--threads", "3", "--json",
			"--huge-pages=false", "p"},
			func(t *testing.T, o *generateOptions) {
				want := generateOptions{Model: "m.gguf", Prompt: "p", MaxTokens: 7, Temp: 0, TopK: 3, TopP: 0.5, MinP: 0.1,
					RepeatPenalty: 1.2, RepeatLastN: 8, Seed: 42, KVCache: "f32", CtxSize: 256, Threads: 3, JSON: true}
				o.Logger = nil
				if !equalOpts(*o, want) || !slices.Equal(o.Stop, []string{"a", "\n\n"}) {
					t.Fatalf("options %+v\nwant %+v with stops [a \\n\\n]", *o, want)
				}
			}},
		{"shorthands", []string{"generate", "-m", "x.gguf", "-n", "5", "q"}, func(t *testing.T, o *generateOptions) {
			if o.Model != "x.gguf" || o.MaxTokens != 5 {
				t.Fatalf("model %q max %d", o.Model, o.MaxTokens)
			}
		}},
		{"global flags before the command", []string{"--threads", "2", "--json", "generate", "q"}, func(t *testing.T, o *generateOptions) {
			if o.Threads != 2 || !o.JSON {
				t.Fatalf("threads %d json %v", o.Threads, o.JSON)
			}
		}},
		{"stdin prompt is passed as -", []string{"generate", "-"}, func(t *testing.T, o *generateOptions) {
			if o.Prompt != "-" {
				t.Fatalf("prompt %q", o.Prompt)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, context.Background(), "", true, tt.args...)
			if r.code != 0 || r.generateRan == nil {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			tt.check(t, r.generateRan)
		})
	}
}

// equalOpts compares generateOptions without the Stop slice and the logger.
func equalOpts(a, b generateOptions) bool {
	a.Stop, b.Stop, a.Logger, b.Logger = nil, nil, nil, nil
	return a.Model == b.Model && a.Prompt == b.Prompt && a.MaxTokens == b.MaxTokens && a.Temp == b.Temp &&
		a.TopK == b.TopK && a.TopP == b.TopP && a.MinP == b.MinP && a.RepeatPenalty == b.RepeatPenalty &&
		a.RepeatLastN == b.RepeatLastN && a.Seed == b.Seed && a.KVCache == b.KVCache && a.CtxSize == b.CtxSize &&
		a.Threads == b.Threads && a.JSON == b.JSON && a.HugePages == b.HugePages
}

func TestConfigPrecedence(t *testing.T) {
	type want struct {
		maxTokens int
		threads   int
		model     string
		temp      float32
		stop      []string
	}
	defaults := want{128, 0, defaultModel, 0.8, nil}
	tests := []struct {
		name   string
		file   string // config file name in a temp dir ("" = none); "DEFAULT" = the XDG location
		config string
		env    map[string]string
		args   []string
		want   want
	}{
		{name: "defaults", want: defaults},
		{name: "yaml config", file: "c.yaml", config: "max-tokens: 9\nthreads: 3\nmodel: cfg.gguf\ntemp: 0.25\nstop: [\"x\", \"y\"]\n",
			want: want{9, 3, "cfg.gguf", 0.25, []string{"x", "y"}}},
		{name: "toml config", file: "c.toml", config: "max-tokens = 11\ntemp = 0.5\nstop = \"z\"\n",
			want: want{11, 0, defaultModel, 0.5, []string{"z"}}},
		{name: "json config", file: "c.json", config: `{"max-tokens": 1000000, "threads": 1}`,
			want: want{1000000, 1, defaultModel, 0.8, nil}},
		{name: "default config location", file: "DEFAULT", config: "max-tokens: 12\n",
			want: want{12, 0, defaultModel, 0.8, nil}},
		{name: "env beats config", file: "c.yaml", config: "max-tokens: 9\nthreads: 3\n",
			env:  map[string]string{"SQUEEZE_MAX_TOKENS": "20", "SQUEEZE_MODEL": "env.gguf"},
			want: want{20, 3, "env.gguf", 0.8, nil}},
		{name: "flag beats env and config", file: "c.yaml", config: "max-tokens: 9\nthreads: 3\n",
			env:  map[string]string{"SQUEEZE_MAX_TOKENS": "20", "SQUEEZE_THREADS": "4"},
			args: []string{"--max-tokens", "30", "--threads", "5"},
			want: want{30, 5, defaultModel, 0.8, nil}},
		{name: "env alone", env: map[string]string{"SQUEEZE_TEMP": "0", "SQUEEZE_STOP": "END", "SQUEEZE_THREADS": "2"},
			want: want{128, 2, defaultModel, 0, []string{"END"}}},
		{name: "config file from SQUEEZE_CONFIG", file: "c.yaml", config: "max-tokens: 13\n",
			env: map[string]string{"SQUEEZE_CONFIG": "FILE"}, want: want{13, 0, defaultModel, 0.8, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xdg := isolate(t)
			args := []string{"generate"}
			if tt.file != "" {
				path := filepath.Join(t.TempDir(), tt.file)
				if tt.file == "DEFAULT" {
					path = filepath.Join(xdg, "squeeze", "config.yaml")
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
				switch {
				case tt.env["SQUEEZE_CONFIG"] == "FILE":
					t.Setenv("SQUEEZE_CONFIG", path)
				case tt.file != "DEFAULT":
					args = append(args, "--config", path)
				}
			}
			for k, v := range tt.env {
				if k != "SQUEEZE_CONFIG" {
					t.Setenv(k, v)
				}
			}
			args = append(append(args, tt.args...), "prompt")
			r := runCLI(t, context.Background(), "", true, args...)
			if r.code != 0 || r.generateRan == nil {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			o := r.generateRan
			got := want{o.MaxTokens, o.Threads, o.Model, o.Temp, o.Stop}
			if got.maxTokens != tt.want.maxTokens || got.threads != tt.want.threads || got.model != tt.want.model ||
				got.temp != tt.want.temp || !slices.Equal(got.stop, tt.want.stop) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		config  string // written to the default config location
		args    []string
		message string // must appear on stderr
	}{
		{name: "unknown flag", args: []string{"generate", "--bogus", "p"}, message: "unknown flag: --bogus"},
		{name: "no prompt", args: []string{"generate"}, message: "one prompt argument"},
		{name: "two prompts", args: []string{"generate", "a", "b"}, message: "got 2 arguments"},
		{name: "unknown command", args: []string{"generat"}, message: `did you mean generate`},
		{name: "bad number", args: []string{"generate", "--max-tokens", "many", "p"}, message: "invalid argument"},
		{name: "bad log level", args: []string{"--log-level", "loud", "version"}, message: "--log-level"},
		{name: "bad kv cache", args: []string{"generate", "--kv-cache", "q4", "p"}, message: "--kv-cache"},
		{name: "bad top-p", args: []string{"generate", "--top-p", "2", "p"}, message: "top-p"},
		{name: "negative max tokens", args: []string{"generate", "-n", "-1", "p"}, message: "--max-tokens"},
		{name: "negative threads", args: []string{"--threads", "-2", "generate", "p"}, message: "--threads"},
		{name: "bad env value", env: map[string]string{"SQUEEZE_MAX_TOKENS": "lots"}, args: []string{"generate", "p"},
			message: "environment variable SQUEEZE_MAX_TOKENS"},
		{name: "bad config value", config: "top-k: [1, 2]\n", args: []string{"generate", "p"}, message: "top-k"},
		{name: "broken config file", config: "max-tokens: [\n", args: []string{"generate", "p"}, message: "config file"},
		{name: "missing config file", args: []string{"--config", "/nonexistent/squeeze.yaml", "version"}, message: "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xdg := isolate(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if tt.config != "" {
				path := filepath.Join(xdg, "squeeze", "config.yaml")
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The real runner: validation errors must come before any model is opened.
			args := tt.args
			if slices.Contains(args, "generate") {
				args = append(slices.Clone(args), "--model", "/nonexistent.gguf")
			}
			r := runCLI(t, context.Background(), "", false, args...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.message) || !strings.Contains(r.stderr, "--help' for usage") {
				t.Fatalf("stderr %q lacks %q and the usage hint", r.stderr, tt.message)
			}
		})
	}
}

func TestBadModelExitCode(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "notes.gguf")
	if err := os.WriteFile(notGGUF, []byte("this is not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unknownArch := filepath.Join(dir, "gpt9.gguf")
	if err := modeltest.Write(unknownArch, modeltest.Spec{Arch: "gpt9", Tokenizer: true}); err != nil {
		t.Fatal(err)
	}
	noTokenizer := filepath.Join(dir, "notok.gguf")
	if err := modeltest.Write(noTokenizer, modeltest.Spec{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		message string
	}{
		{"missing file", filepath.Join(dir, "absent.gguf"), "no such file"},
		{"not a GGUF file", notGGUF, "not a GGUF file"},
		{"a directory", dir, dir},
		{"unknown architecture", unknownArch, `unsupported architecture: "gpt9"`},
		{"no tokenizer", noTokenizer, "tokenizer.ggml"},
	}
	if demo := filepath.Join(testfiles.Root(t), defaultModel); fileExists(demo) {
		data, err := os.ReadFile(demo)
		if err != nil {
			t.Fatal(err)
		}
		truncated := filepath.Join(dir, "truncated.gguf")
		if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, path, message string }{"truncated", truncated, "truncated"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, context.Background(), "", false, "generate", "--model", tt.path, "p")
			if r.code != exitModel {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, exitModel, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.path) || !strings.Contains(r.stderr, tt.message) || strings.Contains(r.stderr, "panic") {
				t.Fatalf("stderr %q: want the path and %q", r.stderr, tt.message)
			}
			if r.stdout != "" {
				t.Fatalf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestGenerateJSON(t *testing.T) {
	isolate(t)
	model := demoModel(t)
	r := runCLI(t, context.Background(), "", false, "generate", "--json", "--model", model, "--temp", "0", "-n", "12", "--threads", "2", "package main\n")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	// Exactly one JSON object, with the fields scripts depend on.
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value on stdout: %s", r.stdout)
	}
	for _, key := range []string{"text", "tokens", "prompt_tokens", "prefill_tokens_per_s", "decode_tokens_per_s", "stop_reason", "model"} {
		if _, ok := obj[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, r.stdout)
		}
	}
	var rep generateReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.StopReason != "max_tokens" || len(rep.Tokens) != 12 || rep.GeneratedTokens != 12 || rep.Text == "" ||
		rep.PromptTokens != 4 || rep.PrefillTokensPerS <= 0 || rep.DecodeTokensPerS <= 0 || rep.Model != model ||
		rep.Threads != 2 || rep.KVCache != "f16" {
		t.Fatalf("report %+v", rep)
	}

	// The streaming form prints the same greedy text, plus a final newline if needed.
	r2 := runCLI(t, context.Background(), "package main\n", false, "generate", "--model", model, "--temp", "0", "-n", "12", "-")
	if r2.code != 0 {
		t.Fatalf("exit %d, stderr %q", r2.code, r2.stderr)
	}
	want := rep.Text
	if !strings.HasSuffix(want, "\n") {
		want += "\n"
	}
	if r2.stdout != want {
		t.Fatalf("streamed %q, want %q (the JSON text)", r2.stdout, want)
	}
}

func TestGenerateStopString(t *testing.T) {
	isolate(t)
	model := demoModel(t)
	r := runCLI(t, context.Background(), "", false, "generate", "--json", "--model", model, "--temp", "0", "--stop", "\n", "package main")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var rep generateReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.StopReason != "stop" || strings.Contains(rep.Text, "\n") {
		t.Fatalf("stop_reason %q text %q", rep.StopReason, rep.Text)
	}
}

func TestGenerateCancelled(t *testing.T) {
	isolate(t)
	model := demoModel(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runCLI(t, ctx, "", false, "generate", "--json", "--model", model, "p")
	if r.code != exitCancelled {
		t.Fatalf("exit %d, want %d; stderr %q", r.code, exitCancelled, r.stderr)
	}
	var rep generateReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.StopReason != "cancelled" {
		t.Fatalf("stdout %q (%v): want a report with stop_reason cancelled", r.stdout, err)
	}
	if !strings.Contains(r.stderr, "interrupted") {
		t.Fatalf("stderr %q", r.stderr)
	}
}

func TestVersion(t *testing.T) {
	isolate(t)
	r := runCLI(t, context.Background(), "", false, "version", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version == "" || !strings.HasPrefix(v.Go, "go") || v.Commit == "" || v.OS == "" || v.Arch == "" {
		t.Fatalf("version %+v", v)
	}
	r = runCLI(t, context.Background(), "", false, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "squeeze ") || !strings.Contains(r.stdout, v.Go) {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestHelpListsExitStatus(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{{"--help"}, {}, {"generate", "--help"}, {"version", "--help"}, {"help", "generate"}} {
		r := runCLI(t, context.Background(), "", false, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for _, s := range []string{"EXIT STATUS", "130  interrupted", "3    the model file"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%v: help lacks %q:\n%s", args, s, r.stdout)
			}
		}
	}
}

func TestUnknownConfigKeyWarns(t *testing.T) {
	xdg := isolate(t)
	path := filepath.Join(xdg, "squeeze", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("max_tokens: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, context.Background(), "", true, "generate", "p")
	if r.code != 0 || !strings.Contains(r.stderr, "unknown key") || !strings.Contains(r.stderr, "max_tokens") {
		t.Fatalf("exit %d, stderr %q: want a warning about max_tokens", r.code, r.stderr)
	}
	if r.generateRan.MaxTokens != 128 {
		t.Fatalf("max tokens %d from a misspelt key", r.generateRan.MaxTokens)
	}
}

// cancelWriter cancels a context at its first write, like a Ctrl-C once text appears.
type cancelWriter struct {
	bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	return w.Buffer.Write(p)
}

func (w *cancelWriter) WriteString(s string) (int, error) {
	w.cancel()
	return w.Buffer.WriteString(s)
}

func TestGenerateInterruptedMidStream(t *testing.T) {
	isolate(t)
	model := demoModel(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelWriter{cancel: cancel}
	var errb bytes.Buffer
	code := execute(ctx, []string{"generate", "--model", model, "--temp", "0", "-n", "200", "func main() {"},
		streams{In: strings.NewReader(""), Out: out, Err: &errb}, runners{})
	if code != exitCancelled {
		t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, exitCancelled, out.String(), errb.String())
	}
	// What was generated before the interrupt is printed, and ends the line.
	text := out.String()
	if text == "" || !strings.HasSuffix(text, "\n") || len(text) > 200 {
		t.Fatalf("stdout %q: want the first pieces and a newline", text)
	}
	if !strings.Contains(errb.String(), "interrupted after") {
		t.Fatalf("stderr %q", errb.String())
	}
}
