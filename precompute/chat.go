package precompute

import (
	"fmt"
	"strings"

	"squeeze/format"
	"squeeze/runtime/chat"
	"squeeze/runtime/tokenizer"
)

// chatProbe is the conversation ChatText renders after the context: one user message, which
// the families that put the system text into a user turn need. The text before the
// context does not depend on it (see chat.Template.SplitContext).
var chatProbe = []chat.Message{{Role: chat.RoleUser, Content: "?"}}

// ChatText returns the text of a context built for chat requests (Options.Chat): text as
// the system message of a conversation in tmpl's format, cut where the rest of the
// conversation would follow. The result's Before is the template's opening (the BOS text
// where the template writes it, the start of the system message or of the user turn that
// holds it), its Context the text as the template renders it (the Llama 3 family strips
// whitespace at both ends), and After is empty. docs, located in text, are moved to their
// place in Before + Context and clipped to what the template kept.
func ChatText(tmpl *chat.Template, text string, docs []format.Document) (chat.Split, []format.Document, error) {
	s, err := tmpl.SplitContext(text, chatProbe, true)
	if err != nil {
		return chat.Split{}, nil, fmt.Errorf("precompute: rendering the context as the %s template's system message: %w", tmpl.Family(), err)
	}
	// The template keeps the text or trims whitespace at its ends: find what it kept.
	from := strings.Index(text, s.Context)
	if from < 0 {
		return chat.Split{}, nil, fmt.Errorf("%w: the %s template renders the context as other text than the context", ErrInvalid, tmpl.Family())
	}
	to := from + len(s.Context)
	moved := make([]format.Document, len(docs))
	for i, d := range docs {
		start := min(max(d.Offset, from), to)
		end := max(min(d.Offset+d.Bytes, to), start)
		moved[i] = format.Document{Path: d.Path, Offset: len(s.Before) + start - from, Bytes: end - start}
	}
	s.After = ""
	return s, moved, nil
}

// TokenizeChat encodes the text of a context built for chat (ChatText's Before + Context)
// the way a server encodes a rendered chat request: the texts of special tokens parsed as
// their tokens, and BOS exactly once, first (when the model has a BOS token), whether or
// not the template writes its text.
func TokenizeChat(tok *tokenizer.Tokenizer, tmpl *chat.Template, text string) []int32 {
	if tmpl.AddsBOS() {
		text = strings.TrimPrefix(text, tmpl.BOS())
	}
	return withBOS(tok, tok.EncodeWithSpecials(text, false, true))
}
