package cmd

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"squeeze/format"
	"squeeze/runtime/chat"
	"squeeze/runtime/decode"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
)

// chatMLModel writes a small synthetic model with a ChatML chat template whose
// <|im_start|> and <|im_end|> are control tokens (the vocabulary's last two), as in
// Qwen's vocabularies, and returns its path.
func chatMLModel(t *testing.T) string {
	t.Helper()
	spec := testmodel.ChatML(t, modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Context: 1024, Tokenizer: true, Seed: 3},
		modeltest.ChatTemplate(t, "chatml"))
	path := filepath.Join(t.TempDir(), "chatml.gguf")
	if err := modeltest.Write(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestChatArtifact builds a context for chat (precompute --chat), then asks it a question
// with squeeze ask and squeeze serve's chat completions: both continue the context with
// the question as a user turn, the tokens of the whole rendered conversation (checked
// against one greedy dense pass over them), and end at the template's end of turn.
func TestChatArtifact(t *testing.T) {
	isolate(t)
	modelPath := chatMLModel(t)
	art := filepath.Join(filepath.Dir(modelPath), "notes.sqz")
	r := runCLI(t, context.Background(), "", false, "precompute", "--chat", "--model", modelPath, "-o", art,
		"--window", "8", "--levels", "0.05,0.2", "--threads", "1", "--no-predictor", inputDir(t))
	if r.code != 0 {
		t.Fatalf("precompute --chat: exit %d: %s", r.code, r.stderr)
	}
	a, err := format.ReadArtifact(art)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m, f, tok := testmodel.File(t, modelPath)
	tmpl, err := chat.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	c := a.Header.Settings.Chat
	if c == nil {
		t.Fatal("precompute --chat recorded no chat settings")
	}
	system := strings.TrimPrefix(a.Text, c.Before)

	// conversation returns the tokens of the whole conversation with the context as its
	// system message and one user turn (BOS once, first), checks that they start with the
	// artifact's, and returns the query's: the rest.
	conversation := func(t *testing.T, user string) (whole, query []int32) {
		t.Helper()
		text, err := tmpl.Render([]chat.Message{{Role: chat.RoleSystem, Content: system}, {Role: chat.RoleUser, Content: user}}, true)
		if err != nil {
			t.Fatal(err)
		}
		whole = append([]int32{tok.BOS()}, tok.EncodeWithSpecials(strings.TrimPrefix(text, tmpl.BOS()), false, true)...)
		n := len(a.Context.Tokens)
		if !slices.Equal(whole[:n], a.Context.Tokens) {
			t.Fatalf("the conversation's tokens do not start with the artifact's:\n%v\n%v", whole[:n], a.Context.Tokens)
		}
		return whole, whole[n:]
	}
	const question = "what does package a return?"
	whole, query := conversation(t, question)
	e := decode.Engine{Model: m, Tokenizer: tok}
	want, err := e.GenerateTokens(context.Background(), whole, decode.Options{MaxTokens: 8, Cache: model.CacheF16, Stop: tmpl.Stop()})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ask", func(t *testing.T) {
		r := runCLI(t, context.Background(), "", false, "ask", "--json", "--dense", "--temp", "0", "-n", "8", "--threads", "2", art, question)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var rep askReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("stdout %q: %v", r.stdout, err)
		}
		if rep.PromptTokens != len(query) || !slices.Equal(rep.Tokens, want.Tokens) || rep.Text != want.Text {
			t.Fatalf("ask: %d prompt tokens, answer %v %q; want %d prompt tokens (the user turn and the assistant's opening) and the whole conversation's answer %v %q",
				rep.PromptTokens, rep.Tokens, rep.Text, len(query), want.Tokens, want.Text)
		}
		// --query-template, when given, shapes the user's turn.
		r = runCLI(t, context.Background(), "", false, "ask", "--json", "--dense", "--temp", "0", "-n", "1", "--query-template", "Q: {query}", art, question)
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
			t.Fatalf("ask --query-template: exit %d, %v: %s", r.code, err, r.stderr)
		}
		if _, q := conversation(t, "Q: "+question); rep.PromptTokens != len(q) {
			t.Fatalf("ask --query-template: %d prompt tokens, want %d", rep.PromptTokens, len(q))
		}
	})

	t.Run("serve", func(t *testing.T) {
		opts := serveDefaults()
		opts.Artifacts = []string{art}
		url, _, _ := startServe(t, opts)
		body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": question}},
			"max_tokens": 8, "temperature": 0, "budget": 1})
		resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var cr struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
			Usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Squeeze struct {
				ContextTokens int `json:"context_tokens"`
			} `json:"squeeze"`
		}
		if err := json.Unmarshal(b, &cr); err != nil || resp.StatusCode != http.StatusOK || len(cr.Choices) != 1 {
			t.Fatalf("chat completion: %d %s", resp.StatusCode, b)
		}
		if cr.Squeeze.ContextTokens+cr.Usage.PromptTokens != len(whole) || cr.Usage.PromptTokens != len(query) {
			t.Fatalf("context %d + prompt %d tokens, want the whole conversation's %d (%d after the context)",
				cr.Squeeze.ContextTokens, cr.Usage.PromptTokens, len(whole), len(query))
		}
		// JSON carries invalid UTF-8 (the random model's bytes) as U+FFFD.
		wantText, _ := json.Marshal(want.Text)
		var text string
		json.Unmarshal(wantText, &text)
		if cr.Choices[0].Message.Content != text || cr.Usage.CompletionTokens != len(want.Tokens) {
			t.Fatalf("answer %q (%d tokens), want the whole conversation's %q (%d)", cr.Choices[0].Message.Content,
				cr.Usage.CompletionTokens, want.Text, len(want.Tokens))
		}
	})
}
