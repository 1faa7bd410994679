package cmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"squeeze/precompute/eval"
)

func TestEvalUsageErrors(t *testing.T) {
	isolate(t)
	text := filepath.Join(t.TempDir(), "corpus.txt")
	if err := os.WriteFile(text, []byte("package a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		message string
	}{
		{"no text", []string{}, "--text is required"},
		{"argument", []string{"--text", text, "extra"}, "no arguments"},
		{"bad budget", []string{"--text", text, "--budgets", "1,0"}, "--budgets"},
		{"budget above 1", []string{"--text", text, "--budgets", "2"}, "--budgets"},
		{"budget not a number", []string{"--text", text, "--budgets", "half"}, "--budgets"},
		{"bad mode", []string{"--text", text, "--mode", "sideways"}, "--mode"},
		{"bad levels", []string{"--text", text, "--levels", "0.05,0.01"}, "--levels"},
		{"bad kv cache", []string{"--text", text, "--kv-cache", "q4"}, "--kv-cache"},
		{"negative windows", []string{"--text", text, "--windows", "-1"}, "--windows"},
		{"negative block", []string{"--text", text, "--block", "-1"}, "--block"},
		{"short context", []string{"--text", text, "--context", "2"}, "--context"},
		{"short query", []string{"--text", text, "--query", "1"}, "--query"},
		{"zero window", []string{"--text", text, "--window", "0"}, "--window"},
		{"negative sink", []string{"--text", text, "--sink", "-1"}, "--sink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"eval", "--model", "/nonexistent.gguf"}, tt.args...)
			r := runCLI(t, context.Background(), "", false, args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.message) {
				t.Fatalf("exit %d, want %d; stderr %q lacks %q", r.code, exitUsage, r.stderr, tt.message)
			}
		})
	}
}

func TestEvalMissingInputs(t *testing.T) {
	isolate(t)
	model := tinyModel(t)
	short := filepath.Join(t.TempDir(), "short.txt")
	if err := os.WriteFile(short, []byte("package a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"missing model", []string{"--model", "/nonexistent.gguf", "--text", short}, exitModel},
		{"missing text", []string{"--model", model, "--text", filepath.Join(t.TempDir(), "none.txt")}, exitError},
		{"text too short", []string{"--model", model, "--text", short, "--context", "64", "--query", "8"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, context.Background(), "", false, append([]string{"eval"}, tt.args...)...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
		})
	}
}

func TestEvalJSONAndTable(t *testing.T) {
	if testing.Short() {
		t.Skip("squeezes a window of a synthetic model")
	}
	isolate(t)
	model := tinyModel(t)
	text := filepath.Join(t.TempDir(), "corpus.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("package a\n\nfunc A(x int) int { return x * 2 }\n", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"eval", "--model", model, "--text", text, "--windows", "1", "--context", "160", "--query", "16",
		"--budgets", "1,0.5", "--mode", "prefill,decode", "--window", "16", "--threads", "1"}
	r := runCLI(t, context.Background(), "", false, append(args, "--json")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4: %q", len(lines), r.stdout)
	}
	for i, line := range lines {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
		for _, key := range []string{"kv", "budget", "windows", "ppl", "ppl_dense", "kl", "top1", "realized_budget", "attention_mass"} {
			if _, ok := row[key]; !ok {
				t.Errorf("line %d lacks %q: %s", i, key, line)
			}
		}
		var typed eval.Row
		if err := json.Unmarshal([]byte(line), &typed); err != nil || typed.KV != "f16" || typed.Windows != 1 || typed.Tokens != 15 {
			t.Errorf("line %d: %+v, %v", i, typed, err)
		}
	}
	if !strings.Contains(r.stderr, "window 1/1") {
		t.Errorf("no progress on stderr: %q", r.stderr)
	}
	r = runCLI(t, context.Background(), "", false, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "ppl_dense") || strings.Count(r.stdout, "\n") != 5 {
		t.Fatalf("table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
