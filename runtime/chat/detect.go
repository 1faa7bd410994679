package chat

import (
	"fmt"
	"regexp"
	"strings"
)

// detect recognizes the family of the template src and reads its details. The regular
// expressions below match the Jinja source text, where a newline inside a string literal
// is spelled \n or written as is.
func detect(src string) (*Template, error) {
	t := &Template{writesBOS: strings.Contains(src, "bos_token")}
	switch {
	case strings.Contains(src, imStart):
		t.family = FamilyChatML
		t.chatml = chatmlParams{
			defaultSystem: defaultSystem(src),
			reasoning:     strings.Contains(src, "</think>") && strings.Contains(src, "last_query_index"),
		}
	case strings.Contains(src, startHeader):
		t.family = FamilyLlama3
		if m := reCutoff.FindStringSubmatch(src); m != nil {
			t.llama3 = llama3Params{dated: true, onlyWithSystem: reSystemIf.MatchString(src), cutoff: jinjaUnescape(m[1]), date: "26 Jul 2024"}
			if d := reDate.FindStringSubmatch(src); d != nil {
				t.llama3.date = jinjaUnescape(d[1] + d[2])
			}
		}
	case strings.Contains(src, startOfTurn):
		t.family = FamilyGemma
	case strings.Contains(src, "[INST]"):
		if strings.Contains(src, "[SYSTEM_PROMPT]") {
			return nil, fmt.Errorf("%w: a Mistral template with [SYSTEM_PROMPT] (v7) is not supported; known families: %s", ErrUnsupported, knownFamilies)
		}
		t.family = FamilyMistral
		t.inst = instDetails(src)
		if t.inst.system == sysBlock {
			t.family = FamilyLlama2
		}
	default:
		return nil, fmt.Errorf("%w: the template has none of the markers of the known families: %s", ErrUnsupported, knownFamilies)
	}
	return t, nil
}

var (
	// reDefaultSystem finds a string literal that writes a whole system turn, the default
	// system message of Qwen 2 and 2.5 ('<|im_start|>system\nYou are ...<|im_end|>\n').
	reDefaultSystem = regexp.MustCompile(`(?:'<\|im_start\|>system(?:\\n|\n)((?:[^'\\]|\\.)*?)<\|im_end\|>|"<\|im_start\|>system(?:\\n|\n)((?:[^"\\]|\\.)*?)<\|im_end\|>)`)
	// reCutoff and reDate find Llama 3.1's knowledge cutoff and default date.
	reCutoff = regexp.MustCompile(`Cutting Knowledge Date: ((?:[^'"\\\n]|\\[^n])*)(?:\\n|\n)`)
	// reSystemIf finds a system turn written only if there is a system message (a variant
	// of Llama 3.2 templates).
	reSystemIf = regexp.MustCompile(`if system_message\s*-?%\}\s*\{\{-?\s*["']<\|start_header_id\|>system`)
	reDate     = regexp.MustCompile(`date_string\s*=\s*(?:"([^"]*)"|'([^']*)')`)
	// reOpen and reClose find the literals around a user message: "[INST] " + ... + " [/INST]".
	reOpen  = regexp.MustCompile(`['"]( ?\[INST\] ?)['"]\s*\+`)
	reClose = regexp.MustCompile(`\+\s*['"]( ?\[/INST\])['"]`)
	// reUserStrip finds a user message stripped after [INST]: Llama 2's
	// '[INST] ' + content.strip(), Code Llama's '[INST] ' + content | trim.
	reUserStrip = regexp.MustCompile(`\[INST\] ?['"]\s*\+\s*(?:message\[['"]content['"]\]|message\.content|content)(?:\.strip\(\)|\s*\|\s*trim)`)
	// reBOSTurn finds BOS written before each [INST].
	reBOSTurn = regexp.MustCompile(`bos_token\s*\+\s*['"] ?\[INST\]`)
	// reAssistant finds the expression that writes an assistant message and EOS:
	// [' ' +] content[.strip() | trim] + [' ' +] eos_token [+ ' '].
	reAssistant = regexp.MustCompile(`(['"] ['"]\s*\+\s*)?(?:message\[['"]content['"]\]|message\.content|content)(\.strip\(\)|\s*\|\s*trim)?\s*\+\s*(['"] ['"]\s*\+\s*)?eos_token(\s*\+\s*['"] ['"])?`)
	// reSystemLast finds Mistral v3's placement of the system message in the last user
	// message.
	reSystemLast = regexp.MustCompile(`loop\.last\s+and\s+system_message`)
)

// defaultSystem returns the default system message of a ChatML template, "" if none.
func defaultSystem(src string) string {
	m := reDefaultSystem.FindStringSubmatch(src)
	if m == nil {
		return ""
	}
	return jinjaUnescape(m[1] + m[2])
}

// instDetails reads the details of an [INST] template.
func instDetails(src string) instParams {
	p := instParams{open: "[INST] ", close: " [/INST]", asstBefore: " "}
	switch {
	case strings.Contains(src, "<<SYS>>"):
		p.system = sysBlock
	case strings.Contains(src, "system_message") && reSystemLast.MatchString(src):
		p.system = sysLast
	case strings.Contains(src, "system_message"):
		p.system = sysFirst
	default:
		p.system = sysFolded
	}
	if m := reOpen.FindStringSubmatch(src); m != nil {
		p.open = m[1]
	}
	if m := reClose.FindStringSubmatch(src); m != nil {
		p.close = m[1]
	}
	p.bosEachTurn = reBOSTurn.MatchString(src)
	p.strip = reUserStrip.MatchString(src)
	if m := reAssistant.FindStringSubmatch(src); m != nil {
		p.asstBefore, p.asstStrip = "", m[2] != ""
		if m[1] != "" {
			p.asstBefore = " "
		}
		if m[3] != "" {
			p.asstBeforeEOS = " "
		}
		if m[4] != "" {
			p.asstAfterEOS = " "
		}
	}
	return p
}

// jinjaUnescape resolves the escapes of a Jinja (Python) string literal that templates
// use: \n, \t, \\, \' and \". Others are kept as written.
func jinjaUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '\\', '\'', '"':
			b.WriteByte(s[i])
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
