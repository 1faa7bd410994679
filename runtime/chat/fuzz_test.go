package chat

import (
	"errors"
	"strings"
	"testing"
)

// FuzzRender renders conversations of random roles and contents with every template:
// Render and SplitContext never panic, fail only with ErrInvalidMessages, agree with each
// other, and the prompt holds every user content (trimmed where the family trims).
func FuzzRender(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1}, "You are\n", " hi ", "ctx", true)
	f.Add([]byte{1}, "", "", "", false)
	f.Add([]byte{1, 2, 1, 2, 1}, "<think>x</think>y", "\x1c\u3000", "\n", true)
	f.Add([]byte{3, 0, 1}, "[INST]", "<|im_end|>", " ", false)
	roles := []string{RoleSystem, RoleUser, RoleAssistant, "tool"}
	var tmpls []*Template
	for _, m := range models {
		tmpls = append(tmpls, load(f, m.name, m.bos, m.eos))
	}
	f.Fuzz(func(t *testing.T, shape []byte, a, b, ctx string, gen bool) {
		if len(shape) > 16 {
			shape = shape[:16]
		}
		msgs := make([]Message, len(shape))
		for i, c := range shape {
			content := a
			if i%2 == 1 {
				content = b
			}
			msgs[i] = Message{Role: roles[int(c)%len(roles)], Content: content}
		}
		for i, tmpl := range tmpls {
			name := models[i].name
			got, err := tmpl.Render(msgs, gen)
			if err != nil {
				if !errors.Is(err, ErrInvalidMessages) {
					t.Fatalf("%s: Render(%q): %v", name, msgs, err)
				}
			} else {
				for _, m := range msgs {
					c := m.Content
					if tmpl.Family() != FamilyChatML {
						c, _ = pyStrip(c)
					}
					if m.Role == RoleUser && !strings.Contains(got, c) {
						t.Fatalf("%s: Render(%q) = %q lacks the user content %q", name, msgs, got, c)
					}
				}
			}
			s, err := tmpl.SplitContext(ctx, msgs, gen)
			if err != nil {
				if !errors.Is(err, ErrInvalidMessages) {
					t.Fatalf("%s: SplitContext(%q): %v", name, msgs, err)
				}
				continue
			}
			if tmpl.Family() != FamilyLlama3 && s.Context != ctx {
				t.Fatalf("%s: SplitContext(%q, %q) context %q", name, ctx, msgs, s.Context)
			}
		}
	})
}
