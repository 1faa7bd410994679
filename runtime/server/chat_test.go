package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/format"
	"squeeze/precompute"
	"squeeze/runtime/chat"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
	"squeeze/runtime/tokenizer"
)

// chatModel is a model built from a context precomputed for chat (precompute --chat) with
// a ChatML template whose <|im_start|> and <|im_end|> are control tokens, as in Qwen's
// vocabularies.
type chatModel struct {
	model *Model
	text  string // the artifact's text
	tok   *tokenizer.Tokenizer
	tmpl  *chat.Template
}

// buildChatModel writes the ChatML model and a chat artifact of contextText. Without
// spacePrefix the tokenizer puts no "▁" before a text that starts its input
// (tokenizer.ggml.add_space_prefix false, as in Gemma's vocabularies).
func buildChatModel(t *testing.T, spacePrefix bool) *chatModel {
	t.Helper()
	dir := t.TempDir()
	spec := testmodel.ChatML(t, testSpec, chatMLTemplate)
	spec.Meta[tokenizer.KeyAddSpacePrefix] = spacePrefix
	modelPath := filepath.Join(dir, "chatml.gguf")
	if err := modeltest.Write(modelPath, spec); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(input, []byte(contextText), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "chat.sqz")
	_, err := precompute.Run(context.Background(), precompute.Options{
		Model: modelPath, Output: out, Inputs: []string{input}, Threads: 2, HeaderTemplate: precompute.DefaultHeaderTemplate,
		System: "You answer questions about the notes.", Chat: true,
		Squeeze: precompute.SqueezeOptions{Fractions: []float64{0.1, 0.3}, Window: 8, Budget: 0.3, Budgets: []float64{0.2, 0.5}, Seed: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := format.ReadArtifact(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cm := &chatModel{text: a.Text}
	m, f, tok := testmodel.File(t, modelPath)
	cm.tok = tok
	if cm.tmpl, err = chat.FromGGUF(f); err != nil {
		t.Fatal(err)
	}
	c := a.Header.Settings.Chat
	if c == nil {
		t.Fatal("precompute --chat wrote no chat settings")
	}
	cm.model = &Model{ID: "chat", Model: m, Tokenizer: cm.tok, Context: a.Context, Budget: 0.3, Chat: cm.tmpl,
		ChatContext: &ChatContext{Family: c.Family, Before: c.Before, Context: strings.TrimPrefix(a.Text, c.Before)}}
	return cm
}

// chatRequestOf decodes a chat request body.
func chatRequestOf(t *testing.T, body string) *chatRequest {
	t.Helper()
	var req chatRequest
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

// TestChatContext checks that a chat request on a context built for chat is the whole
// conversation, rendered with the context as its system message, token for token: the
// precomputed tokens followed by the request's query.
func TestChatContext(t *testing.T) {
	for _, spacePrefix := range []bool{true, false} {
		t.Run(fmt.Sprintf("space prefix %v", spacePrefix), func(t *testing.T) { testChatContext(t, spacePrefix) })
	}
}

func testChatContext(t *testing.T, spacePrefix bool) {
	cm := buildChatModel(t, spacePrefix)
	s := newServer(t, Config{Threads: 2}, cm.model)
	ctxText := cm.model.ChatContext.Context
	if !strings.HasPrefix(cm.text, "<|im_start|>system\nYou answer questions about the notes.\n") {
		t.Fatalf("the chat artifact's text starts %q", cm.text[:60])
	}
	for _, tc := range []struct {
		name, messages string
		system         string // the whole system message
		turns          []chat.Message
		// plainBoundary: the client's system text follows the context, so the query
		// starts with plain text; its tokens are the conversation's only where no token
		// would span the context's end (not with a "▁" before the query's text).
		plainBoundary bool
	}{
		{"user only", `[{"role":"user","content":"what does the turtle count?"}]`, ctxText,
			[]chat.Message{{Role: chat.RoleUser, Content: "what does the turtle count?"}}, false},
		{"client system", `[{"role":"system","content":"be brief"},{"role":"user","content":"why?"},{"role":"assistant","content":"clouds"},{"role":"user","content":"and?"}]`,
			ctxText + "\nbe brief", // a blank line after the context, which ends with a newline
			[]chat.Message{{Role: chat.RoleUser, Content: "why?"}, {Role: chat.RoleAssistant, Content: "clouds"}, {Role: chat.RoleUser, Content: "and?"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, e := s.chatJob(chatRequestOf(t, `{"model":"chat","max_tokens":4,"messages":`+tc.messages+`}`))
			if e != nil {
				t.Fatal(e.Message)
			}
			if tc.plainBoundary && spacePrefix {
				// The query is the rest of the conversation tokenized on its own, with the
				// "▁" the tokenizer puts before a text that starts its input.
				msgs := append([]chat.Message{{Role: chat.RoleSystem, Content: "be brief"}}, tc.turns...)
				split, err := cm.tmpl.SplitContext(ctxText, msgs, true)
				if err != nil {
					t.Fatal(err)
				}
				space, _ := cm.tok.TokenID("\u2581")
				if want := cm.tok.EncodeWithSpecials(split.After, false, true); !slices.Equal(j.prompt, want) || want[0] != space {
					t.Fatalf("query %v, want %v, starting with a space", j.prompt, want)
				}
				return
			}
			whole, err := cm.tmpl.Render(append([]chat.Message{{Role: chat.RoleSystem, Content: tc.system}}, tc.turns...), true)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]int32{cm.tok.BOS()}, cm.tok.EncodeWithSpecials(whole, false, true)...)
			got := append(slices.Clone(cm.model.Context.Tokens), j.prompt...)
			if !slices.Equal(got, want) {
				t.Fatalf("context and query:\n%v\nwant the rendered conversation's tokens\n%v", got, want)
			}
			if !slices.Contains(j.stop, "<|im_end|>") {
				t.Errorf("stop strings %q lack the template's end of turn", j.stop)
			}
		})
	}

	// Over HTTP.
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	status, _, body := post(t, ts, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"count?"}],"max_tokens":3,"temperature":0}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var r chatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	after := strings.TrimPrefix(mustRender(t, cm.tmpl, ctxText, "count?"), cm.text)
	if wantN := len(cm.tok.EncodeWithSpecials(after, false, true)); r.Usage.PromptTokens != wantN {
		t.Errorf("prompt tokens %d, want %d (the rendering after the context, %q)", r.Usage.PromptTokens, wantN, after)
	}
}

// mustRender renders a system message and one user message.
func mustRender(t *testing.T, tmpl *chat.Template, system, user string) string {
	t.Helper()
	text, err := tmpl.Render([]chat.Message{{Role: chat.RoleSystem, Content: system}, {Role: chat.RoleUser, Content: user}}, true)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// TestChatContextRefused checks the chat contexts SetModels refuses (a template that
// renders the context otherwise than precompute did) and the conversations a request may
// not send (one that puts other text before the context).
func TestChatContextRefused(t *testing.T) {
	loadFixture(t)
	ctxText := "notes about the fox\n"
	good, _, err := precompute.ChatText(fixture.tmpl, ctxText, nil)
	if err != nil {
		t.Fatal(err)
	}
	llama3, err := chat.Parse(modeltest.ChatTemplate(t, "llama3.1"), "<s>", "</s>")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tmpl *chat.Template
		c    ChatContext
		want string
	}{
		{"no template", nil, ChatContext{Family: chat.FamilyChatML, Before: good.Before, Context: good.Context}, "no usable chat template"},
		{"other family", llama3, ChatContext{Family: chat.FamilyChatML, Before: good.Before, Context: good.Context}, "the model's template is llama3"},
		{"other opening", fixture.tmpl, ChatContext{Family: chat.FamilyChatML, Before: "<|im_start|>user\n", Context: good.Context}, "template changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := *fixture.model
			m.Chat, m.ChatContext = tc.tmpl, &tc.c
			s, err := New(Config{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.SetModels([]*Model{&m}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetModels: %v, want an error saying %q", err, tc.want)
			}
		})
	}

	// Mistral v3 puts the system text into the last user turn: a conversation of two
	// user turns renders the first before the context.
	mistral, err := chat.Parse(modeltest.ChatTemplate(t, "mistral-v3"), "<s>", "</s>")
	if err != nil {
		t.Fatal(err)
	}
	split, _, err := precompute.ChatText(mistral, ctxText, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := *fixture.model
	m.Chat, m.ChatContext = mistral, &ChatContext{Family: mistral.Family(), Before: split.Before, Context: split.Context}
	s := newServer(t, Config{Threads: 1}, &m)
	if _, e := s.chatJob(chatRequestOf(t, `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`)); e != nil {
		t.Fatalf("one user turn: %s", e.Message)
	}
	_, e := s.chatJob(chatRequestOf(t, `{"model":"tiny","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`))
	if e == nil || e.Status != http.StatusBadRequest || e.Code != "context_mismatch" {
		t.Fatalf("two user turns: %+v, want 400 context_mismatch", e)
	}
}

// TestChatContextFamilies checks that contexts precomputed for chat with the templates of
// every family load, and that a request with a client system message is served around
// them.
func TestChatContextFamilies(t *testing.T) {
	loadFixture(t)
	for _, name := range []string{"chatml", "qwen2.5", "llama3.1", "llama3.2-if-system", "llama2", "mistral-v1", "mistral-v3", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			tmpl, err := chat.Parse(modeltest.ChatTemplate(t, name), "<s>", "</s>")
			if err != nil {
				t.Fatal(err)
			}
			split, _, err := precompute.ChatText(tmpl, "  the notes about the fox \n\n", nil)
			if err != nil {
				t.Fatal(err)
			}
			m := *fixture.model
			m.Chat, m.ChatContext = tmpl, &ChatContext{Family: tmpl.Family(), Before: split.Before, Context: split.Context}
			s := newServer(t, Config{Threads: 1}, &m)
			j, e := s.chatJob(chatRequestOf(t, `{"model":"tiny","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"why?"}]}`))
			if e != nil {
				t.Fatal(e.Message)
			}
			after, err := tmpl.SplitContext(split.Context, []chat.Message{{Role: chat.RoleSystem, Content: "be brief"}, {Role: chat.RoleUser, Content: "why?"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(after.After, "be brief") || !strings.Contains(after.After, "why?") {
				t.Fatalf("the query's text %q lacks the conversation", after.After)
			}
			if want := m.Tokenizer.EncodeWithSpecials(after.After, false, true); !slices.Equal(j.prompt, want) {
				t.Fatalf("query %v, want the tokens of %q", j.prompt, after.After)
			}
		})
	}
}
