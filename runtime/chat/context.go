package chat

import (
	"errors"
	"fmt"
)

// ErrContextMismatch means that a template renders other text around a fixed context than
// the context was precomputed with: a template of another family or version than the
// one the context was built with, or a conversation that puts other text before the
// context (see Template.Continue).
var ErrContextMismatch = errors.New("chat: the template renders other text before the fixed context than it was precomputed behind")

// probe is the conversation CheckContext renders around a context: one user message,
// which the families that put the system text into a user turn need. The text before
// the context does not depend on it (see Template.SplitContext).
var probe = []Message{{Role: RoleUser, Content: "?"}}

// CheckContext checks that t renders a fixed context precomputed for chat with a template
// of family as it was precomputed: pre.Before before the context, pre.Context as the
// context (squeeze precompute --chat records both; pre.After is ignored). It fails with
// ErrContextMismatch for a template of another family, or one that renders other text
// (a template changed since precompute).
func (t *Template) CheckContext(family string, pre Split) error {
	if t.family != family {
		return fmt.Errorf("%w: the context was built with a %s template, but the model's template is %s", ErrContextMismatch, family, t.family)
	}
	_, err := t.Continue(pre, probe, true)
	return err
}

// Continue renders the conversation msgs around a fixed context precomputed as
// pre.Before + pre.Context (pre.After is ignored) and returns the text that follows the
// context: the client's system text, if msgs starts with a system message, the rest of
// the conversation, and the generation prompt when addGenerationPrompt is set. It is
// SplitContext(pre.Context, msgs, addGenerationPrompt).After, with SplitContext's errors,
// once the rendering is checked to continue the precomputed text: it fails with
// ErrContextMismatch where the text before the context is not pre.Before (Mistral v3
// templates, which put the system text into the last user turn, render the earlier turns
// before it) or the context is not rendered as pre.Context.
func (t *Template) Continue(pre Split, msgs []Message, addGenerationPrompt bool) (string, error) {
	s, err := t.SplitContext(pre.Context, msgs, addGenerationPrompt)
	if err != nil {
		return "", err
	}
	if s.Before != pre.Before {
		return "", fmt.Errorf("%w: %q before it, not %q", ErrContextMismatch, s.Before, pre.Before)
	}
	if s.Context != pre.Context {
		return "", fmt.Errorf("%w: the %s template renders the context as %d bytes, not %d", ErrContextMismatch, t.family, len(s.Context), len(pre.Context))
	}
	return s.After, nil
}
