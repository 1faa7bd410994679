package modeltest

import (
	"os"
	"path/filepath"
	"testing"

	"squeeze/runtime/testfiles"
)

// ChatTemplate returns one of runtime/chat's test templates, testdata/name.jinja there
// (chatml, llama2, llama3.1, gemma3, ...): a model's chat template metadata, as in
// Spec{Meta: map[string]any{chat.KeyTemplate: ChatTemplate(tb, "chatml")}}.
func ChatTemplate(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(testfiles.Root(tb), "runtime", "chat", "testdata", name+".jinja"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
