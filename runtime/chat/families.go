package chat

import (
	"fmt"
	"strings"
	"unicode"
)

// Family markers and turn delimiters.
const (
	imStart     = "<|im_start|>"
	imEnd       = "<|im_end|>"
	startHeader = "<|start_header_id|>"
	endHeader   = "<|end_header_id|>"
	eotID       = "<|eot_id|>"
	startOfTurn = "<start_of_turn>"
	endOfTurn   = "<end_of_turn>"
)

// chatmlParams are the ChatML details read from a template.
type chatmlParams struct {
	// defaultSystem is put as the system message when the conversation has none (Qwen 2
	// and 2.5); "" for none.
	defaultSystem string
	// reasoning: Qwen 3's handling of <think> blocks in assistant messages.
	reasoning bool
}

func (p chatmlParams) describe() string {
	var s string
	if p.defaultSystem != "" {
		s += fmt.Sprintf(", default system %q", p.defaultSystem)
	}
	if p.reasoning {
		s += ", reasoning (Qwen 3)"
	}
	return s
}

// renderChatML renders <|im_start|>role\ncontent<|im_end|>\n turns.
func (t *Template) renderChatML(w *writer, msgs []Message, gen bool) error {
	p := t.chatml
	if t.AddsBOS() {
		w.text(t.bos)
	}
	if msgs[0].Role != RoleSystem && p.defaultSystem != "" {
		w.text(imStart, "system\n", p.defaultSystem, imEnd, "\n")
	}
	lastQuery := len(msgs) - 1
	if p.reasoning {
		lastQuery = lastUserQuery(msgs)
	}
	for i, m := range msgs {
		switch {
		case i == 0 && m.Role == RoleSystem:
			w.text(imStart, "system\n")
			w.system(m.Content, 0, 0)
			w.text(imEnd, "\n")
		case m.Role == RoleAssistant && p.reasoning:
			w.text(imStart, "assistant\n", qwen3Assistant(m.Content, i > lastQuery, i == len(msgs)-1), imEnd, "\n")
		default:
			w.text(imStart, m.Role, "\n", m.Content, imEnd, "\n")
		}
	}
	if gen {
		w.text(imStart, "assistant\n")
	}
	return nil
}

// lastUserQuery returns the index of the last user message that is not a tool response
// (Qwen 3's ns.last_query_index), or len(msgs)-1 if there is none.
func lastUserQuery(msgs []Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		c := msgs[i].Content
		if msgs[i].Role == RoleUser && !(strings.HasPrefix(c, "<tool_response>") && strings.HasSuffix(c, "</tool_response>")) {
			return i
		}
	}
	return len(msgs) - 1
}

// qwen3Assistant renders an assistant message's content as Qwen 3's template does: the
// reasoning (the text before </think>, after <think>) is dropped, except for assistant
// messages after the last user query that are the last message or have reasoning, which
// keep it in a <think> block.
func qwen3Assistant(content string, afterQuery, last bool) string {
	reasoning := ""
	if before, _, ok := strings.Cut(content, "</think>"); ok {
		content = strings.TrimLeft(content[strings.LastIndex(content, "</think>")+len("</think>"):], "\n")
		before = strings.TrimRight(before, "\n")
		if i := strings.LastIndex(before, "<think>"); i >= 0 {
			before = before[i+len("<think>"):]
		}
		reasoning = strings.TrimLeft(before, "\n")
	}
	if afterQuery && (last || reasoning != "") {
		return "<think>\n" + strings.Trim(reasoning, "\n") + "\n</think>\n\n" + strings.TrimLeft(content, "\n")
	}
	return content
}

// llama3Params are the Llama 3 details read from a template.
type llama3Params struct {
	// dated: Llama 3.1 and later open with a system turn that starts with the knowledge
	// cutoff and today's date: always, or (onlyWithSystem, a variant of some Llama 3.2
	// derivatives) only when the conversation has a system message that is not blank.
	dated, onlyWithSystem bool
	// cutoff and date are the texts of "Cutting Knowledge Date: " and "Today Date: ".
	cutoff, date string
}

func (p llama3Params) describe() string {
	if !p.dated {
		return ""
	}
	s := fmt.Sprintf(" (3.1+, knowledge date %q, today %q", p.cutoff, p.date)
	if p.onlyWithSystem {
		s += ", only with a system message"
	}
	return s + ")"
}

// renderLlama3 renders <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
// turns, contents stripped of surrounding whitespace.
func (t *Template) renderLlama3(w *writer, msgs []Message, gen bool) error {
	p := t.llama3
	if t.AddsBOS() {
		w.text(t.bos)
	}
	header := func(role string) { w.text(startHeader, role, endHeader, "\n\n") }
	if p.dated {
		system, lead := "", 0
		if msgs[0].Role == RoleSystem {
			system, lead = pyStrip(msgs[0].Content)
		}
		if !p.onlyWithSystem || system != "" {
			header(RoleSystem)
			w.text("Cutting Knowledge Date: ", p.cutoff, "\n", "Today Date: ", p.date, "\n\n")
			w.system(system, lead, 0)
			w.text(eotID)
		}
		if msgs[0].Role == RoleSystem {
			msgs = msgs[1:]
		}
	}
	for i, m := range msgs {
		header(m.Role)
		out, lead := pyStrip(m.Content)
		if i == 0 && m.Role == RoleSystem {
			w.system(out, lead, 0)
		} else {
			w.text(out)
		}
		w.text(eotID)
	}
	if gen {
		header(RoleAssistant)
	}
	return nil
}

// System message placements of the [INST] templates.
const (
	// sysBlock: Llama 2's "<<SYS>>\n" + system + "\n<</SYS>>\n\n" before the first user
	// message.
	sysBlock = iota
	// sysFirst: system + "\n\n" before the first user message (Mistral v1).
	sysFirst
	// sysLast: system + "\n\n" before the last user message, if the conversation ends with
	// it (Mistral v3 and Tekken).
	sysLast
	// sysFolded: the template has no system message; it is put as sysFirst does, the
	// placement mistral-common uses for v1.
	sysFolded
)

// instParams are the [INST] details read from a template.
type instParams struct {
	system int
	// bosEachTurn: BOS before every user turn (Llama 2), not once at the start.
	bosEachTurn bool
	// open and close surround a user message, e.g. "[INST] " and " [/INST]".
	open, close string
	// strip: user and assistant contents are stripped (Llama 2's content.strip()).
	strip bool
	// An assistant message is asstBefore + content (stripped if asstStrip) + asstBeforeEOS
	// + EOS + asstAfterEOS.
	asstBefore, asstBeforeEOS, asstAfterEOS string
	asstStrip                               bool
}

func (p instParams) describe() string {
	place := [...]string{"<<SYS>> block", "system before the first user message", "system before the last user message", "no system message (folded into the first user message)"}[p.system]
	s := fmt.Sprintf(" (%s, user %q+content+%q, assistant %q+content+%q+EOS+%q", place, p.open, p.close, p.asstBefore, p.asstBeforeEOS, p.asstAfterEOS)
	if p.bosEachTurn {
		s += ", BOS before every user turn"
	}
	if p.strip {
		s += ", contents stripped"
	}
	return s + ")"
}

// renderInst renders [INST] user [/INST] assistant</s> turns. A prompt that ends with a
// user turn ends with the close marker, where the assistant's answer begins.
func (t *Template) renderInst(w *writer, msgs []Message) error {
	p := t.inst
	if err := t.alternate(msgs); err != nil {
		return err
	}
	system, hasSystem := "", msgs[0].Role == RoleSystem
	if hasSystem {
		system = msgs[0].Content
		msgs = msgs[1:]
	}
	if hasSystem && p.system == sysLast && msgs[len(msgs)-1].Role != RoleUser {
		return fmt.Errorf("%w: the %s template puts the system message into the last user message, and the conversation ends with an assistant message", ErrInvalidMessages, t.family)
	}
	if t.AddsBOS() && !p.bosEachTurn {
		w.text(t.bos)
	}
	for i, m := range msgs {
		if m.Role == RoleAssistant {
			c := m.Content
			if p.asstStrip {
				c, _ = pyStrip(c)
			}
			w.text(p.asstBefore, c, p.asstBeforeEOS, t.eos, p.asstAfterEOS)
			continue
		}
		if p.bosEachTurn && t.bos != "" {
			w.text(t.bos)
		}
		w.text(p.open)
		withSystem := hasSystem && (i == 0 && p.system != sysLast || i == len(msgs)-1 && p.system == sysLast)
		if !withSystem {
			c := m.Content
			if p.strip {
				c, _ = pyStrip(c)
			}
			w.text(c, p.close)
			continue
		}
		prefix, mid := "", "\n\n"
		if p.system == sysBlock {
			prefix, mid = "<<SYS>>\n", "\n<</SYS>>\n\n"
		}
		c := prefix + system + mid + m.Content
		out, lead := c, 0
		if p.strip {
			out, lead = pyStrip(c)
		}
		w.system(out, lead, len(prefix))
		w.text(p.close)
	}
	return nil
}

// renderGemma renders <start_of_turn>role\ncontent<end_of_turn>\n turns, the assistant's
// role written "model", contents stripped; a system message's text and a blank line open
// the first user turn, as in Gemma 3's template.
func (t *Template) renderGemma(w *writer, msgs []Message, gen bool) error {
	if err := t.alternate(msgs); err != nil {
		return err
	}
	if t.AddsBOS() {
		w.text(t.bos)
	}
	system, hasSystem := "", msgs[0].Role == RoleSystem
	if hasSystem {
		system = msgs[0].Content
		msgs = msgs[1:]
	}
	for i, m := range msgs {
		role := m.Role
		if role == RoleAssistant {
			role = "model"
		}
		w.text(startOfTurn, role, "\n")
		if i == 0 && hasSystem {
			w.system(system, 0, 0)
			w.text("\n\n")
		}
		c, _ := pyStrip(m.Content)
		w.text(c, endOfTurn, "\n")
	}
	if gen {
		w.text(startOfTurn, "model\n")
	}
	return nil
}

// pySpace reports whether Python's str.isspace holds for r, which is what Jinja's trim
// filter and str.strip() remove: Unicode white space plus the separators U+001C to U+001F.
func pySpace(r rune) bool {
	return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f
}

// pyStrip returns s without the leading and trailing white space Python's str.strip()
// removes, and the number of bytes removed at the start.
func pyStrip(s string) (out string, lead int) {
	left := strings.TrimLeftFunc(s, pySpace)
	return strings.TrimRightFunc(left, pySpace), len(s) - len(left)
}
