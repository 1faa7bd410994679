// Package chat renders chat conversations into prompt text the way a model's chat template
// (the Jinja source in a GGUF's tokenizer.chat_template) would, for the template families
// squeeze knows.
//
// # Families
//
// There is no Jinja interpreter here. Parse recognizes a template by the distinctive
// strings in its source, as llama.cpp's llm_chat_detect_template does, reads the details
// that vary between versions of a family from the source (a default system message, where
// a system message goes, the spaces around [INST]), and renders with Go code per family:
//
//   - FamilyChatML, "<|im_start|>": ChatML and Qwen (Qwen 2 and 2.5 insert their default
//     system message when the conversation has none; Qwen 3 drops the reasoning of earlier
//     assistant turns).
//   - FamilyLlama3, "<|start_header_id|>": Llama 3, and Llama 3.1 to 3.3, whose system turn
//     always opens with the "Cutting Knowledge Date" and "Today Date" lines. The date is
//     the template's default (date_string, "26 Jul 2024" in Meta's templates), never the
//     current date, so that the system turn, and a context precomputed behind it, stays the
//     same from day to day.
//   - FamilyLlama2 and FamilyMistral, "[INST]": Llama 2 and Code Llama with their <<SYS>>
//     block and BOS before every user turn, and Mistral's templates, which prepend the
//     system message and a blank line to the first user message (v1) or the last one (v3,
//     Tekken). Mistral templates without system messages (Mistral 7B v0.1 and v0.2) raise an
//     exception for one; here it is prepended to the first user message as mistral-common
//     does for them. Mistral's v7 templates ([SYSTEM_PROMPT]) are not supported.
//   - FamilyGemma, "<start_of_turn>": Gemma 1 to 3; the system message and a blank line
//     open the first user turn as in Gemma 3's template (Gemma 1 and 2 templates reject a
//     system message).
//
// Tool calls, tool messages and multimodal content are outside this package: messages have
// one of the roles system, user and assistant and plain text content.
//
// # Special tokens and BOS
//
// The rendered text spells special tokens as their text ("<|im_start|>", "<s>"), so it
// must be tokenized with special-token parsing (tokenizer's EncodeWithSpecials with
// parseSpecial). Where a template writes the BOS token itself, the text starts with the BOS
// text and AddsBOS is true; a tokenizer that also adds BOS (Tokenizer.AddBOS) would then
// put two. The caller adds BOS exactly once: either encode without addSpecial, or cut
// Template.BOS() off the front of the text (as llama.cpp's server does) and let the
// tokenizer add it. Llama 2 templates also write BOS before every later user turn; those
// stay in the text.
package chat

import (
	"errors"
	"fmt"
	"strings"

	"squeeze/runtime/gguf"
	"squeeze/runtime/tokenizer"
)

// KeyTemplate is the GGUF metadata key of the chat template.
const KeyTemplate = "tokenizer.chat_template"

// Roles of chat messages.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Template families, the values of Template.Family.
const (
	FamilyChatML  = "chatml"
	FamilyLlama3  = "llama3"
	FamilyLlama2  = "llama2"
	FamilyMistral = "mistral"
	FamilyGemma   = "gemma"
)

var (
	// ErrNoTemplate means the model has no chat template (or an empty one).
	ErrNoTemplate = errors.New("chat: no chat template")
	// ErrUnsupported means the template is not one of the families this package renders.
	ErrUnsupported = errors.New("chat: unsupported chat template")
	// ErrInvalidMessages means a conversation the template cannot render: no messages, an
	// unknown role, or roles in an order the family does not allow.
	ErrInvalidMessages = errors.New("chat: invalid messages")
)

// knownFamilies lists the families for error messages.
const knownFamilies = "ChatML/Qwen (<|im_start|>), Llama 3 (<|start_header_id|>), " +
	"Llama 2/Mistral ([INST]) and Gemma (<start_of_turn>)"

// Message is one chat message. Role is RoleSystem, RoleUser or RoleAssistant.
type Message struct {
	Role, Content string
}

// Template renders conversations in the format of one model's chat template. It is
// immutable and safe for concurrent use.
type Template struct {
	family   string
	bos, eos string
	// writesBOS: the template source writes bos_token.
	writesBOS bool

	chatml chatmlParams
	llama3 llama3Params
	inst   instParams
}

// FromGGUF reads the chat template of a model: tokenizer.chat_template, with the BOS and
// EOS texts from the model's vocabulary (tokenizer.ReadVocab: tokenizer.ggml.bos_token_id
// and eos_token_id, with llama.cpp's defaults). Without the key it returns an error
// wrapping ErrNoTemplate; a template of an unknown family gives ErrUnsupported.
func FromGGUF(f *gguf.File) (*Template, error) {
	src, err := f.String(KeyTemplate)
	if errors.Is(err, gguf.ErrNotFound) {
		return nil, fmt.Errorf("%w: the model has no %s metadata; squeeze serves chat only for models with a template (use /v1/completions for plain text)", ErrNoTemplate, KeyTemplate)
	}
	if err != nil {
		return nil, fmt.Errorf("chat: %w", err)
	}
	v, err := tokenizer.ReadVocab(f)
	if err != nil {
		return nil, fmt.Errorf("chat: reading the BOS and EOS tokens: %w", err)
	}
	return Parse(src, tokenText(v, v.BOS), tokenText(v, v.EOS))
}

// tokenText returns the text of token id, "" for -1.
func tokenText(v tokenizer.Vocab, id int32) string {
	if id < 0 || int(id) >= len(v.Tokens) {
		return ""
	}
	return v.Tokens[id]
}

// Parse recognizes the family of the Jinja template src (see the package documentation)
// and returns a Template that renders it with bos and eos as the texts of the template's
// bos_token and eos_token ("" where the model has none). An empty src gives ErrNoTemplate,
// a template of no known family ErrUnsupported.
func Parse(src, bos, eos string) (*Template, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%w: the template is empty", ErrNoTemplate)
	}
	t, err := detect(src)
	if err != nil {
		return nil, err
	}
	t.bos, t.eos = bos, eos
	return t, nil
}

// Family returns the template family: FamilyChatML, FamilyLlama3, FamilyLlama2,
// FamilyMistral or FamilyGemma.
func (t *Template) Family() string { return t.family }

// BOS returns the text of the BOS token the template writes ("" if the model has none).
func (t *Template) BOS() string { return t.bos }

// EOS returns the text of the EOS token the template writes ("" if the model has none).
func (t *Template) EOS() string { return t.eos }

// AddsBOS reports whether rendered prompts start with the BOS text, written by the template
// itself. See the package documentation for who adds BOS.
func (t *Template) AddsBOS() bool { return t.writesBOS && t.bos != "" }

// Stop returns the texts at which a generation ends its turn: the family's end-of-turn
// marker ("<|im_end|>", "<|eot_id|>", "<end_of_turn>") and the EOS text, without
// duplicates. The Llama 2 and Mistral families end turns with EOS ("</s>" if the model
// names none). These are usually control tokens, which decoded text leaves out: match
// generated token ids against them (tokenizer's IsEOG covers the common ones) rather than
// only the decoded text.
func (t *Template) Stop() []string {
	var stop []string
	switch t.family {
	case FamilyChatML:
		stop = append(stop, imEnd)
	case FamilyLlama3:
		stop = append(stop, eotID)
	case FamilyGemma:
		stop = append(stop, endOfTurn)
	case FamilyLlama2, FamilyMistral:
		if t.eos == "" {
			stop = append(stop, "</s>")
		}
	}
	if t.eos != "" && (len(stop) == 0 || stop[0] != t.eos) {
		stop = append(stop, t.eos)
	}
	return stop
}

// String describes the template and the variant detected, for logs.
func (t *Template) String() string {
	switch t.family {
	case FamilyChatML:
		return "chatml" + t.chatml.describe()
	case FamilyLlama3:
		return "llama3" + t.llama3.describe()
	case FamilyLlama2, FamilyMistral:
		return t.family + t.inst.describe()
	}
	return t.family
}

// Render returns the prompt text of msgs as the model's template renders it, followed by
// the opening of an assistant turn if addGenerationPrompt (for the Llama 2 and Mistral
// families a prompt ending in a user turn is already open for the assistant, and
// addGenerationPrompt changes nothing). It returns an error wrapping ErrInvalidMessages
// for an empty list, an unknown role, a system message anywhere but first in a family that
// takes one system message (Llama 2, Mistral, Gemma), or user and assistant turns that do
// not alternate starting with user where the family requires it (the same three).
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	w := writer{track: -1, start: -1}
	if err := t.render(&w, msgs, addGenerationPrompt); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

// Split is a prompt cut around a fixed context: Before + Context + After is the whole
// prompt.
type Split struct {
	// Before is the template text before the context: the BOS text where the template
	// writes it, and the opening of the system message or of the user turn that holds it.
	Before string
	// Context is the context as the template renders it: the context given to
	// SplitContext, except that the Llama 3 family strips whitespace at both ends of the
	// system message, which can shorten the context at its start, and at its end when no
	// client system message follows it.
	Context string
	// After is the rest of the prompt: the client's system text, the conversation, and the
	// generation prompt.
	After string
}

// SplitContext renders the conversation msgs with a fixed context as its system message
// and returns the prompt cut around the context, so that a server can take a precomputed
// Before + Context as the start of the prompt and append After. The system message has as
// content the context alone; if msgs starts with a system message of its own (the
// client's), that text follows the context after a blank line ("\n" if the context ends
// with a newline, else "\n\n"). The rest of msgs is rendered as Render would, with the
// same errors, and one more: templates that leave out a blank system message (some Llama
// 3.2 variants) fail for a blank context.
//
// Before is the same for every conversation in all families but one: Mistral templates
// that put the system message into the last user message (Mistral v0.3 and later) render
// the earlier turns before it. Callers comparing Before with what they precomputed catch
// that case.
func (t *Template) SplitContext(context string, msgs []Message, addGenerationPrompt bool) (Split, error) {
	conv := make([]Message, 0, len(msgs)+1)
	system := context
	if len(msgs) > 0 && msgs[0].Role == RoleSystem {
		sep := "\n\n"
		if strings.HasSuffix(context, "\n") {
			sep = "\n"
		}
		system += sep + msgs[0].Content
		msgs = msgs[1:]
	}
	conv = append(conv, Message{Role: RoleSystem, Content: system})
	conv = append(conv, msgs...)
	w := writer{track: len(context), start: -1}
	if err := t.render(&w, conv, addGenerationPrompt); err != nil {
		return Split{}, err
	}
	if w.start < 0 {
		return Split{}, fmt.Errorf("%w: the %s template leaves out a blank system message, and the context (with the client's system text) is blank", ErrInvalidMessages, t.family)
	}
	s := w.b.String()
	return Split{Before: s[:w.start], Context: s[w.start:w.end], After: s[w.end:]}, nil
}

// render validates msgs and writes the prompt into w.
func (t *Template) render(w *writer, msgs []Message, gen bool) error {
	if len(msgs) == 0 {
		return fmt.Errorf("%w: no messages", ErrInvalidMessages)
	}
	for i, m := range msgs {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant:
		default:
			return fmt.Errorf("%w: message %d has role %q; the roles are system, user and assistant", ErrInvalidMessages, i, m.Role)
		}
	}
	switch t.family {
	case FamilyChatML:
		return t.renderChatML(w, msgs, gen)
	case FamilyLlama3:
		return t.renderLlama3(w, msgs, gen)
	case FamilyLlama2, FamilyMistral:
		return t.renderInst(w, msgs)
	case FamilyGemma:
		return t.renderGemma(w, msgs, gen)
	}
	return fmt.Errorf("%w: family %q", ErrUnsupported, t.family)
}

// alternate checks the rule of the families with one leading system message: after it,
// the roles alternate user, assistant, user, ..., and there is at least one user message
// when there is a system message (the system text goes into a user turn).
func (t *Template) alternate(msgs []Message) error {
	turns := msgs
	if msgs[0].Role == RoleSystem {
		turns = msgs[1:]
		if len(turns) == 0 {
			return fmt.Errorf("%w: a system message alone; the %s template puts the system text into a user turn, so a user message must follow", ErrInvalidMessages, t.family)
		}
	}
	off := len(msgs) - len(turns)
	for i, m := range turns {
		want := RoleUser
		if i%2 == 1 {
			want = RoleAssistant
		}
		if m.Role == RoleSystem {
			return fmt.Errorf("%w: message %d is a system message; the %s template takes one, as the first message", ErrInvalidMessages, off+i, t.family)
		}
		if m.Role != want {
			return fmt.Errorf("%w: message %d is %q where the %s template needs %q: after the optional system message, roles must alternate user/assistant/user/...", ErrInvalidMessages, off+i, m.Role, t.family, want)
		}
	}
	return nil
}

// writer collects a rendered prompt and, for SplitContext, where the context landed.
type writer struct {
	b strings.Builder
	// track is the length of the context at the start of the leading system message's
	// content, -1 when not splitting.
	track int
	// start and end delimit the context in the output once written (start -1 before).
	start, end int
}

// text writes template text or message text that is not tracked.
func (w *writer) text(s ...string) {
	for _, x := range s {
		w.b.WriteString(x)
	}
}

// system writes out, a text the template made from a content c in which the leading
// system message's content begins at byte off, by cutting lead bytes off the start of c
// (and maybe some off its end): out == c[lead:lead+len(out)]. It records where the
// context, c[off:off+track], lies in the output.
func (w *writer) system(out string, lead, off int) {
	if w.track >= 0 && w.start < 0 {
		clip := func(x int) int { return min(max(x, 0), len(out)) }
		base := w.b.Len()
		w.start, w.end = base+clip(off-lead), base+clip(off+w.track-lead)
	}
	w.b.WriteString(out)
}
