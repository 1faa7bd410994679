package format

import (
	"fmt"
	"strings"
)

// SectionChat names the optional section of an artifact built for chat requests
// (squeeze precompute --chat): Settings.Chat.
const SectionChat = "chat"

// ChatInfo says that an artifact's context was built for chat: its text is the opening of
// a conversation, rendered with the model's chat template, whose system message holds the
// context. The text is Before followed by the context as the template renders it, and a
// server appends the rest of a rendered conversation to it.
type ChatInfo struct {
	// Family is the chat template's family (runtime/chat's Family constants).
	Family string `json:"family"`
	// Before is the template's text before the context: the BOS text where the template
	// writes it and the opening of the system message (or of the user turn that holds
	// it). The artifact's text starts with it.
	Before string `json:"before"`
}

// encodeChat encodes the chat section.
func encodeChat(e *Encoder, c *ChatInfo) {
	e.Text(c.Family)
	e.Text(c.Before)
}

// decodeChat decodes the chat section.
func decodeChat(d *Decoder) (*ChatInfo, error) {
	c := &ChatInfo{Family: d.Text(), Before: d.Text()}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if c.Family == "" {
		return nil, &Error{Where: sectionWhere(SectionChat) + " data", Reason: "no template family", Err: ErrCorrupt}
	}
	return c, nil
}

// checkChat checks the chat settings against the artifact's text.
func checkChat(c *ChatInfo, text string) error {
	switch {
	case c == nil:
		return nil
	case c.Family == "":
		return fmt.Errorf("chat settings without a template family")
	case !strings.HasPrefix(text, c.Before):
		return fmt.Errorf("the text does not start with the chat template's opening %q", c.Before)
	}
	return nil
}
