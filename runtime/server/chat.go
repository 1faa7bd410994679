package server

import (
	"fmt"
	"net/http"
	"strings"

	"squeeze/runtime/chat"
)

// ChatContext is the text of a fixed context built for chat (squeeze precompute --chat):
// the opening of a conversation in the model's chat template whose system message holds
// the context. The artifact's text is Before + Context.
type ChatContext struct {
	// Family is the family of the template the context was rendered with (chat.Family*).
	Family string
	// Before is the template's text before the context: the BOS text where the template
	// writes it, then the opening of the system message or of the user turn holding it.
	Before string
	// Context is the context as the template rendered it: the rest of the artifact's text.
	Context string
}

// chatProbe is the conversation checkChatContext renders around a chat context: one user
// message, as precompute renders it (the text before the context does not depend on it).
var chatProbe = []chat.Message{{Role: chat.RoleUser, Content: "?"}}

// checkChatContext checks that m's chat template renders m's chat context as it was
// precomputed: the same family, the same text before it, the same context.
func checkChatContext(m *Model) error {
	c := m.ChatContext
	if m.Chat == nil {
		return fmt.Errorf("model %s: the context was built for chat with a %s template, but the model has no usable chat template", m.ID, c.Family)
	}
	if f := m.Chat.Family(); f != c.Family {
		return fmt.Errorf("model %s: the context was built for chat with a %s template, but the model's template is %s: rebuild it with squeeze precompute --chat", m.ID, c.Family, f)
	}
	s, err := m.Chat.SplitContext(c.Context, chatProbe, true)
	if err != nil {
		return fmt.Errorf("model %s: rendering the chat context: %w", m.ID, err)
	}
	if s.Before != c.Before || s.Context != c.Context {
		return fmt.Errorf("model %s: the chat template renders the context as other text than the artifact holds (%q before it, not %q; the template changed?): rebuild it with squeeze precompute --chat",
			m.ID, s.Before, c.Before)
	}
	return nil
}

// chatTokens renders a chat request's conversation with m's template and encodes its query,
// the tokens that follow the fixed context, with special-token texts as their tokens.
//
// For a context built for chat (m.ChatContext), the context is the conversation's system
// message, the client's system text after it (chat.Template.SplitContext): the query is
// what follows the context, and the text before it must be the text the context was
// precomputed behind. Otherwise the query is ChatJoin and the whole rendering without the
// BOS text a template writes first (the context starts with BOS already).
func chatTokens(m *Model, msgs []chat.Message) ([]int32, *apiError) {
	c := m.ChatContext
	if c == nil {
		text, err := m.Chat.Render(msgs, true)
		if err != nil {
			return nil, badRequest("messages", "cannot render the conversation with model %s's chat template: %v", m.ID, err)
		}
		if m.Chat.AddsBOS() {
			text = strings.TrimPrefix(text, m.Chat.BOS())
		}
		return m.Tokenizer.EncodeWithSpecials(m.ChatJoin+text, false, true), nil
	}
	s, err := m.Chat.SplitContext(c.Context, msgs, true)
	if err != nil {
		return nil, badRequest("messages", "cannot render the conversation around model %s's fixed context with its chat template: %v", m.ID, err)
	}
	if s.Before != c.Before || s.Context != c.Context {
		// Mistral templates that put the system message into the last user turn render
		// the earlier turns before it.
		return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "messages", Code: "context_mismatch",
			Message: fmt.Sprintf("model %s's %s template renders this conversation with other text before the fixed context than the context was precomputed behind "+
				"(%q, not %q): send a conversation with one user turn", m.ID, c.Family, s.Before, c.Before)}
	}
	return m.Tokenizer.EncodeWithSpecials(s.After, false, true), nil
}
