package cmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"squeeze/format"
	"squeeze/runtime/model/modeltest"
)

// tinyModel writes a small synthetic model with a tokenizer and returns its path.
func tinyModel(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := modeltest.Write(path, modeltest.Spec{Tokenizer: true, Context: 1024, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	return path
}

// inputDir writes a few text files and a binary one.
func inputDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"a.go":     strings.Repeat("package a\n\nfunc A() int { return 1 }\n", 5),
		"b.md":     strings.Repeat("Some notes about package a.\n", 6),
		"data.bin": "\x00\x01\x02",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrecomputeAndInspect(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	out := filepath.Join(t.TempDir(), "ctx.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--json", "--model", model, "-o", out,
		"--window", "8", "--budget", "0.2", "--levels", "0.05,0.2", "--threads", "1", in)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var rep precomputeReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout %q: %v", r.stdout, err)
	}
	if rep.Output != out || rep.Tokens < 50 || rep.Layers != 2 || rep.Documents != 2 || len(rep.Skipped) != 1 ||
		rep.FileBytes <= 0 || len(rep.Calibration) != 6 {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(r.stderr, "skipped") || !strings.Contains(r.stderr, "data.bin") {
		t.Errorf("stderr does not note the binary file: %q", r.stderr)
	}

	r = runCLI(t, context.Background(), "", false, "inspect", out)
	if r.code != 0 {
		t.Fatalf("inspect exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"tiny.gguf", "layer.1", "calibration", "0.2", "clusters per layer"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, context.Background(), "", false, "inspect", "--json", out)
	var ir inspectReport
	if err := json.Unmarshal([]byte(r.stdout), &ir); err != nil || r.code != 0 {
		t.Fatalf("inspect --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if ir.Tokens != rep.Tokens || len(ir.Layers) != 2 || len(ir.Layers[0].Levels) != 2 || len(ir.Sections) != 6 || ir.Predictor == nil ||
		ir.Settings.Window != 8 || ir.Model.File != "tiny.gguf" {
		t.Fatalf("inspect report %+v", ir)
	}
}

func TestPrecomputeErrors(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no inputs", []string{"--model", model, "-o", "x.sqz"}, exitUsage, "at least one input"},
		{"no output", []string{"--model", model, in}, exitUsage, "--output"},
		{"bad levels", []string{"--model", model, "-o", "x.sqz", "--levels", "0.5,0.1", in}, exitUsage, "--levels"},
		{"bad budget", []string{"--model", model, "-o", "x.sqz", "--budget", "2", in}, exitUsage, "--budget"},
		{"bad glob", []string{"--model", model, "-o", "x.sqz", "--exclude", "[", in}, exitUsage, "pattern"},
		{"missing model", []string{"--model", filepath.Join(in, "none.gguf"), "-o", "x.sqz", in}, exitModel, "none.gguf"},
		{"too long", []string{"--model", model, "-o", "x.sqz", "--ctx-size", "20", in}, exitError, "more than the context length of 20"},
		{"nothing to read", []string{"--model", model, "-o", "x.sqz", "--include", "*.rs", in}, exitError, "no input documents"},
		{"chat without template", []string{"--model", model, "-o", "x.sqz", "--chat", in}, exitUsage, "tiny.gguf: chat: no chat template"},
		{"output is the model", []string{"--model", model, "-o", model, in}, exitUsage, "is the model"},
		{"output is a directory", []string{"--model", model, "-o", in, in}, exitUsage, "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			r := runCLI(t, context.Background(), "", false, append([]string{"precompute"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.msg)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("left %d files", len(ents))
			}
		})
	}
}

// TestPrecomputeChat builds a chat context with a ChatML model; inspect --json shows the
// chat settings.
func TestPrecomputeChat(t *testing.T) {
	isolate(t)
	model := filepath.Join(t.TempDir(), "chatml.gguf")
	const chatML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
		"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	if err := modeltest.Write(model, modeltest.Spec{Tokenizer: true, Context: 1024, Seed: 2, Meta: map[string]any{"tokenizer.chat_template": chatML}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "chat.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--chat", "--model", model, "-o", out,
		"--window", "8", "--levels", "0.05,0.2", "--threads", "1", "--no-predictor", inputDir(t))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	r = runCLI(t, context.Background(), "", false, "inspect", "--json", out)
	var ir inspectReport
	if err := json.Unmarshal([]byte(r.stdout), &ir); err != nil || r.code != 0 {
		t.Fatalf("inspect --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if c := ir.Settings.Chat; c == nil || c.Family != "chatml" || c.Before != "<|im_start|>system\n" {
		t.Fatalf("chat settings %+v, want the ChatML family and its system opening", c)
	}
}

func TestPrecomputeCancelled(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runCLI(t, ctx, "", false, "precompute", "--model", model, "-o", filepath.Join(dir, "x.sqz"), in)
	if r.code != exitCancelled || !strings.Contains(r.stderr, "interrupted") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %d files", len(ents))
	}
}

func TestPrecomputeStdin(t *testing.T) {
	isolate(t)
	model := tinyModel(t)
	out := filepath.Join(t.TempDir(), "x.sqz")
	r := runCLI(t, context.Background(), strings.Repeat("hello from stdin\n", 10), false,
		"precompute", "--model", model, "-o", out, "--window", "4", "--header", `-- {path} --\n`, "-")
	if r.code != 0 || !strings.Contains(r.stdout, "wrote "+out) {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	a, err := format.ReadArtifact(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !strings.HasPrefix(a.Text, "-- - --\nhello from stdin\n") {
		t.Fatalf("text %.40q: want the header with its \\n as a newline", a.Text)
	}
}

func TestInspectBadFiles(t *testing.T) {
	isolate(t)
	model, in := tinyModel(t), inputDir(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.sqz")
	if r := runCLI(t, context.Background(), "", false, "precompute", "--model", model, "-o", good, "--window", "8", in); r.code != 0 {
		t.Fatalf("precompute: %s", r.stderr)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x10
	for name, content := range map[string][]byte{
		"truncated.sqz": data[:len(data)-10],
		"flipped.sqz":   flipped,
		"text.sqz":      []byte("package main\n"),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, context.Background(), "", false, "inspect", p)
		if r.code != exitModel || !strings.Contains(r.stderr, name) {
			t.Errorf("%s: exit %d, stderr %q", name, r.code, r.stderr)
		}
	}
	if r := runCLI(t, context.Background(), "", false, "inspect", filepath.Join(dir, "missing.sqz")); r.code != exitModel {
		t.Errorf("missing file: exit %d", r.code)
	}
}
