package precompute

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/runtime/chat"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
)

// TestChatText renders a joined context into the system message of several template
// families and checks the text, the documents' places and the tokens.
func TestChatText(t *testing.T) {
	docs := []Document{{Path: "a.go", Text: "package a\n"}, {Path: "b.txt", Text: "notes on b\n"}}
	for _, tc := range []struct {
		template, system string
		wantBefore       string // "" to check only that the text starts with the template's opening
	}{
		{"chatml", "You answer questions.", "<|im_start|>system\n"},
		{"qwen2.5", "", "<|im_start|>system\n"},
		{"llama3.1", "  leading spaces the template trims", ""},
		{"gemma3", "", "<s><start_of_turn>user\n"},
		{"llama2", "", "<s>[INST] <<SYS>>\n"},
		{"mistral-v3", "", ""},
	} {
		t.Run(tc.template, func(t *testing.T) {
			_, f, tok := testmodel.Spec(t, modeltest.Spec{Tokenizer: true, Meta: map[string]any{chat.KeyTemplate: modeltest.ChatTemplate(t, tc.template)}})
			tmpl, err := chat.FromGGUF(f)
			if err != nil {
				t.Fatal(err)
			}
			text, spans := Join(docs, DefaultHeaderTemplate, tc.system)
			s, moved, err := ChatText(tmpl, text, spans)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantBefore != "" && s.Before != tc.wantBefore {
				t.Errorf("Before %q, want %q", s.Before, tc.wantBefore)
			}
			if s.After != "" {
				t.Errorf("After %q, want none", s.After)
			}
			if !strings.Contains(text, s.Context) || strings.TrimSpace(s.Context) != strings.TrimSpace(text) {
				t.Errorf("Context %q is not the text %q (up to whitespace at its ends)", s.Context, text)
			}
			// The context is the system message of every conversation the template renders.
			whole, err := tmpl.Render([]chat.Message{{Role: chat.RoleSystem, Content: s.Context}, {Role: chat.RoleUser, Content: "hi"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(whole, s.Before+s.Context) {
				t.Errorf("the rendered conversation %q does not start with %q", whole, s.Before+s.Context)
			}
			chatText := s.Before + s.Context
			for i, d := range moved {
				// Exact, but for whitespace a trimming template cut off the last document.
				got := chatText[d.Offset : d.Offset+d.Bytes]
				if !strings.HasPrefix(docs[i].Text, got) || strings.TrimSpace(got) != strings.TrimSpace(docs[i].Text) {
					t.Errorf("document %s at %d+%d: %q, want %q", d.Path, d.Offset, d.Bytes, got, docs[i].Text)
				}
			}
			tokens := TokenizeChat(tok, tmpl, chatText)
			if tokens[0] != tok.BOS() || tokens[1] == tok.BOS() {
				t.Errorf("tokens start %v: want BOS %d once", tokens[:2], tok.BOS())
			}
			want := tok.EncodeWithSpecials(strings.TrimPrefix(chatText, tmpl.BOS()), false, true)
			if got := tokens[1:]; !slices.Equal(got, want) {
				t.Errorf("tokens after BOS %v, want %v", got, want)
			}
		})
	}
}

// TestChatTextClipsDocuments checks that documents are clipped to what a template that
// trims the system message keeps.
func TestChatTextClipsDocuments(t *testing.T) {
	f := modeltest.Open(t, modeltest.Spec{Tokenizer: true, Meta: map[string]any{chat.KeyTemplate: modeltest.ChatTemplate(t, "llama3.1")}})
	tmpl, err := chat.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	text, spans := Join([]Document{{Path: "a", Text: "  x y  \n\n"}}, "", "")
	s, moved, err := ChatText(tmpl, text, spans)
	if err != nil {
		t.Fatal(err)
	}
	if s.Context != "x y" {
		t.Fatalf("Context %q, want the trimmed text", s.Context)
	}
	if d := moved[0]; d.Offset != len(s.Before) || d.Bytes != len("x y") {
		t.Errorf("document at %d+%d, want %d+%d", d.Offset, d.Bytes, len(s.Before), len("x y"))
	}
}

// TestRunChat builds a chat context with a ChatML model and refuses one for a model
// without a chat template.
func TestRunChat(t *testing.T) {
	dir := t.TempDir()
	withTemplate := filepath.Join(dir, "chat.gguf")
	spec := modeltest.Spec{Tokenizer: true, Context: 1024, Seed: 3, Meta: map[string]any{chat.KeyTemplate: modeltest.ChatTemplate(t, "chatml")}}
	if err := modeltest.Write(withTemplate, spec); err != nil {
		t.Fatal(err)
	}
	in := corpus(t)

	out := filepath.Join(dir, "chat.sqz")
	opts := runOptions(withTemplate, out, in)
	opts.System = "Answer from the code."
	opts.Chat = true
	a := runArtifact(t, opts)
	c := a.Header.Settings.Chat
	if c == nil || c.Family != chat.FamilyChatML || c.Before != "<|im_start|>system\n" {
		t.Fatalf("chat settings %+v, want the ChatML family and its system opening", c)
	}
	if !strings.HasPrefix(a.Text, c.Before+opts.System+"\n") {
		t.Errorf("text starts %q, want the system opening and the system text", a.Text[:min(len(a.Text), 60)])
	}
	_, f, tok := testmodel.File(t, withTemplate)
	tmpl, err := chat.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := TokenizeChat(tok, tmpl, a.Text); !slices.Equal(a.Context.Tokens, want) {
		t.Errorf("the artifact's tokens are not TokenizeChat of its text")
	}
	for _, d := range a.Header.Documents {
		if d.Offset < len(c.Before) || d.Offset+d.Bytes > len(a.Text) {
			t.Errorf("document %s at %d+%d outside the context", d.Path, d.Offset, d.Bytes)
		}
	}

	// The same inputs without --chat give a plain artifact.
	opts.Output, opts.Chat = filepath.Join(dir, "plain.sqz"), false
	p := runArtifact(t, opts)
	if p.Header.Settings.Chat != nil || c.Before+p.Text != a.Text {
		t.Errorf("plain artifact: chat %+v, text not the chat text without its opening", p.Header.Settings.Chat)
	}

	// A model without a chat template.
	bare := syntheticModel(t)
	opts = runOptions(bare, filepath.Join(dir, "bare.sqz"), in)
	opts.Chat = true
	_, err = Run(context.Background(), opts)
	if !errors.Is(err, chat.ErrNoTemplate) || !strings.Contains(err.Error(), bare) {
		t.Fatalf("--chat without a template: %v, want chat.ErrNoTemplate naming %s", err, bare)
	}
	if _, err := os.Stat(opts.Output); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s", opts.Output)
	}
}
