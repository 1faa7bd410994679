package chat

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitContext(t *testing.T) {
	const ctx = "==== a.go ====\npackage a\n"
	for _, tc := range []struct {
		model                  string
		msgs                   []Message
		before, context, after string
	}{
		{"chatml", []Message{{RoleUser, "q"}}, "<|im_start|>system\n", ctx, "<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen2.5", []Message{{RoleSystem, "Be brief."}, {RoleUser, "q"}}, "<|im_start|>system\n", ctx, "\nBe brief.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"},
		// Llama 3 strips the system message: the context loses its last newline when
		// nothing follows it, and keeps it when the client's system text does.
		{"llama3", []Message{{RoleUser, "q"}}, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n", strings.TrimSuffix(ctx, "\n"), "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3.1", []Message{{RoleSystem, "Be brief. "}, {RoleUser, "q"}}, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n", ctx, "\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama2", []Message{{RoleUser, "q"}}, "<s>[INST] <<SYS>>\n", ctx, "\n<</SYS>>\n\nq [/INST]"},
		{"mistral-v1", []Message{{RoleUser, "q"}, {RoleAssistant, "a"}, {RoleUser, "r"}}, "<s> [INST] ", ctx, "\n\nq [/INST] a</s> [INST] r [/INST]"},
		{"mistral-v3", []Message{{RoleUser, "q"}, {RoleAssistant, "a"}, {RoleUser, "r"}}, "<s>[INST] q[/INST] a</s>[INST] ", ctx, "\n\nr[/INST]"},
		{"gemma3", []Message{{RoleUser, " q "}}, "<bos><start_of_turn>user\n", ctx, "\n\nq<end_of_turn>\n<start_of_turn>model\n"},
	} {
		s, err := model(t, tc.model).SplitContext(ctx, tc.msgs, true)
		if err != nil || s.Before != tc.before || s.Context != tc.context || s.After != tc.after {
			t.Errorf("%s: SplitContext(%q) = %q, %v; want %q", tc.model, tc.msgs, s, err, Split{tc.before, tc.context, tc.after})
		}
	}
}

// TestSplitContextRender checks SplitContext against Render for every template, context
// and conversation: the parts join into the prompt of the documented conversation, the
// context is kept as given where the family does not strip the system message, and Before
// does not depend on the conversation except where the system message goes last.
func TestSplitContextRender(t *testing.T) {
	contexts := []string{"", "ctx", "ctx\n", " \n ctx \n", "\n"}
	convs := [][]Message{
		{{RoleUser, "q"}},
		{{RoleSystem, "client"}, {RoleUser, "q"}},
		{{RoleSystem, ""}, {RoleUser, " q "}, {RoleAssistant, " a "}, {RoleUser, "r"}},
		{{RoleUser, "q"}, {RoleAssistant, "a"}, {RoleUser, "r"}},
	}
	for _, m := range models {
		tmpl := load(t, m.name, m.bos, m.eos)
		for _, ctx := range contexts {
			befores := map[string]bool{}
			for _, msgs := range convs {
				for _, gen := range []bool{false, true} {
					system := ctx
					rest := msgs
					if msgs[0].Role == RoleSystem {
						if strings.HasSuffix(ctx, "\n") {
							system += "\n" + msgs[0].Content
						} else {
							system += "\n\n" + msgs[0].Content
						}
						rest = msgs[1:]
					}
					s, err := tmpl.SplitContext(ctx, msgs, gen)
					if blank, _ := pyStrip(system); blank == "" && tmpl.llama3.onlyWithSystem {
						if !errors.Is(err, ErrInvalidMessages) {
							t.Errorf("%s: SplitContext(%q, %q) with a blank system text: %v; want ErrInvalidMessages", m.name, ctx, msgs, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: SplitContext(%q, %q): %v", m.name, ctx, msgs, err)
					}
					want, err := tmpl.Render(append([]Message{{RoleSystem, system}}, rest...), gen)
					if err != nil {
						t.Fatal(err)
					}
					if got := s.Before + s.Context + s.After; got != want {
						t.Errorf("%s: SplitContext(%q, %q) joins into\n%q; Render gives\n%q", m.name, ctx, msgs, got, want)
					}
					if tmpl.Family() != FamilyLlama3 && s.Context != ctx {
						t.Errorf("%s: SplitContext(%q, %q) context %q", m.name, ctx, msgs, s.Context)
					}
					if tmpl.Family() == FamilyLlama3 && !strings.Contains(ctx, s.Context) {
						t.Errorf("%s: SplitContext(%q, %q) context %q is not part of it", m.name, ctx, msgs, s.Context)
					}
					befores[s.Before] = true
				}
			}
			if len(befores) != 1 && tmpl.inst.system != sysLast {
				t.Errorf("%s: Before depends on the conversation: %v", m.name, befores)
			}
		}
	}
}

func TestSplitContextErrors(t *testing.T) {
	for _, tc := range []struct {
		model string
		msgs  []Message
	}{
		{"chatml", []Message{{"tool", "x"}}},
		{"gemma2", nil},
		{"gemma2", []Message{{RoleSystem, "only"}}},
		{"mistral-v1", []Message{{RoleAssistant, "a"}}},
		{"mistral-v3", []Message{{RoleUser, "q"}, {RoleAssistant, "a"}}},
	} {
		if _, err := model(t, tc.model).SplitContext("ctx", tc.msgs, true); !errors.Is(err, ErrInvalidMessages) {
			t.Errorf("%s: SplitContext(%q): %v; want ErrInvalidMessages", tc.model, tc.msgs, err)
		}
	}
}
