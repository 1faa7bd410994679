package chat

import (
	"errors"
	"testing"
)

// TestContinue checks that Continue returns what follows a precomputed context, the rest
// of SplitContext's prompt around the context as precomputed (which the Llama 3 family
// trims), for every template and conversation that keeps the text before
// the context, and ErrContextMismatch for the others.
func TestContinue(t *testing.T) {
	const ctx = "==== a.go ====\npackage a\n"
	convs := [][]Message{
		{{RoleUser, "q"}},
		{{RoleSystem, "be brief"}, {RoleUser, "q"}},
		{{RoleUser, "q"}, {RoleAssistant, "a"}, {RoleUser, "r"}},
	}
	for _, m := range models {
		tmpl := load(t, m.name, m.bos, m.eos)
		pre, err := tmpl.SplitContext(ctx, probe, true)
		if err != nil {
			continue // templates that refuse a system message
		}
		pre.After = ""
		if err := tmpl.CheckContext(tmpl.Family(), pre); err != nil {
			t.Errorf("%s: CheckContext of its own context: %v", m.name, err)
		}
		for _, msgs := range convs {
			s, err := tmpl.SplitContext(pre.Context, msgs, true)
			if err != nil {
				continue
			}
			after, err := tmpl.Continue(pre, msgs, true)
			switch {
			case s.Before != pre.Before:
				if !errors.Is(err, ErrContextMismatch) {
					t.Errorf("%s %q: Continue = %q, %v; want ErrContextMismatch (%q before the context)", m.name, msgs, after, err, s.Before)
				}
			case err != nil || after != s.After:
				t.Errorf("%s %q: Continue = %q, %v; want %q", m.name, msgs, after, err, s.After)
			}
		}
	}
}

func TestCheckContextMismatch(t *testing.T) {
	chatml, llama3 := model(t, "chatml"), model(t, "llama3")
	good, err := chatml.SplitContext("notes\n", probe, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tmpl   *Template
		family string
		pre    Split
	}{
		{"other family", llama3, FamilyChatML, good},
		{"other opening", chatml, FamilyChatML, Split{Before: "<|im_start|>user\n", Context: good.Context}},
		{"other context", llama3, FamilyLlama3, Split{Before: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n", Context: "notes\n"}},
	} {
		if err := tc.tmpl.CheckContext(tc.family, tc.pre); !errors.Is(err, ErrContextMismatch) {
			t.Errorf("%s: CheckContext = %v, want ErrContextMismatch", tc.name, err)
		}
	}
}
