package server

import (
	"errors"
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

// checkChatContext checks that m's chat template renders m's chat context as it was
// precomputed: the same family, the same text before it, the same context.
func checkChatContext(m *Model) error {
	c := m.ChatContext
	if m.Chat == nil {
		return fmt.Errorf("model %s: the context was built for chat with a %s template, but the model has no usable chat template", m.ID, c.Family)
	}
	if err := m.Chat.CheckContext(c.Family, c.split()); err != nil {
		return fmt.Errorf("model %s: the chat template does not render the context as the artifact holds it (the template changed?): %w: rebuild it with squeeze precompute --chat", m.ID, err)
	}
	return nil
}

// split is c as the chat package takes a precomputed context.
func (c *ChatContext) split() chat.Split { return chat.Split{Before: c.Before, Context: c.Context} }

// chatTokens renders a chat request's conversation with m's template and encodes its query,
// the tokens that follow the fixed context, with special-token texts as their tokens.
//
// For a context built for chat (m.ChatContext), the context is the conversation's system
// message, the client's system text after it (chat.Template.Continue): the query is
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
	after, err := m.Chat.Continue(c.split(), msgs, true)
	if errors.Is(err, chat.ErrContextMismatch) {
		// Mistral templates that put the system message into the last user turn render
		// the earlier turns before it.
		return nil, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: "messages", Code: "context_mismatch",
			Message: fmt.Sprintf("model %s's %s template renders this conversation with other text before the fixed context than the context was precomputed behind "+
				"(%v): send a conversation with one user turn", m.ID, c.Family, err)}
	}
	if err != nil {
		return nil, badRequest("messages", "cannot render the conversation around model %s's fixed context with its chat template: %v", m.ID, err)
	}
	return m.Tokenizer.EncodeWithSpecials(after, false, true), nil
}
