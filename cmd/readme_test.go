package cmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"squeeze/precompute"
	"squeeze/runtime/testfiles"
)

// readmeMainJob returns the argument lists of the squeeze commands in the README's
// quick-start line (the one that builds squeeze and runs precompute, then ask).
func readmeMainJob(t *testing.T) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testfiles.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if !strings.HasPrefix(line, "go build -o squeeze . && ./squeeze precompute") {
			continue
		}
		var cmds [][]string
		for part := range strings.SplitSeq(line, "&&") {
			args, ok := splitShellWords(strings.TrimSpace(part))
			if !ok {
				t.Fatalf("README main job: cannot split %q", part)
			}
			if len(args) > 0 && args[0] == "./squeeze" {
				cmds = append(cmds, args[1:])
			}
		}
		return cmds
	}
	t.Fatal("README has no main-job line starting with \"go build -o squeeze . && ./squeeze precompute\"")
	return nil
}

// splitShellWords splits a command line of plain words and double-quoted strings (no
// escapes), as the README's commands are written.
func splitShellWords(s string) ([]string, bool) {
	var words []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, false
			}
			words = append(words, s[1:1+end])
			s = s[2+end:]
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		words = append(words, s[:end])
		s = s[end:]
	}
	return words, true
}

// TestReadmeMainJob checks that the README's quick start works: its precompute input
// fits the demo model's context (always; the check that broke when the input file grew)
// and, without -short, that precompute and ask both succeed and ask prints an answer.
func TestReadmeMainJob(t *testing.T) {
	model := demoModel(t)
	cmds := readmeMainJob(t)
	if len(cmds) != 2 || cmds[0][0] != "precompute" || cmds[1][0] != "ask" {
		t.Fatalf("README main job runs %q, want precompute then ask", cmds)
	}
	pre := cmds[0]
	input := pre[len(pre)-1]
	isolate(t)
	t.Chdir(testfiles.Root(t)) // the README's commands run from the repository root

	docs, _, err := precompute.ReadInputs(context.Background(), []string{input}, precompute.InputOptions{})
	if err != nil {
		t.Fatalf("README main job input: %v", err)
	}
	text, _ := precompute.Join(docs, precompute.DefaultHeaderTemplate, "")
	lm, err := loadModel(model, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lm.File.Close()
	n, limit := len(precompute.Tokenize(lm.Tokenizer, text)), lm.Model.Config.ContextLength
	if n > limit {
		t.Fatalf("README main job input %s is %d tokens, over the demo model's context of %d: pick a smaller file", input, n, limit)
	}
	t.Logf("README main job input %s: %d tokens (context %d)", input, n, limit)
	if testing.Short() {
		return
	}

	artifact := filepath.Join(t.TempDir(), "main.sqz")
	for _, args := range cmds {
		for i, a := range args {
			if strings.HasSuffix(a, ".sqz") {
				args[i] = artifact
			}
		}
		res := runCLI(t, context.Background(), "", false, args...)
		if res.code != 0 {
			t.Fatalf("squeeze %q: exit %d\n%s", args, res.code, res.stderr)
		}
		if args[0] == "ask" && strings.TrimSpace(res.stdout) == "" {
			t.Fatalf("squeeze %q printed no answer", args)
		}
	}
}
