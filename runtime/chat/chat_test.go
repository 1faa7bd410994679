package chat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"squeeze/runtime/model/modeltest"
)

// load parses testdata/name.jinja with the given BOS and EOS texts.
func load(tb testing.TB, name, bos, eos string) *Template {
	tb.Helper()
	t, err := Parse(modeltest.ChatTemplate(tb, name), bos, eos)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return t
}

// The special tokens of each template in testdata: name, BOS, EOS.
var models = []struct{ name, bos, eos string }{
	{"chatml", "", "<|im_end|>"},
	{"qwen2", "", "<|endoftext|>"},
	{"qwen2.5", "", "<|im_end|>"},
	{"qwen3", "", "<|im_end|>"},
	{"llama3", "<|begin_of_text|>", "<|eot_id|>"},
	{"llama3.1", "<|begin_of_text|>", "<|eot_id|>"},
	{"llama3.2-if-system", "<|begin_of_text|>", "<|eot_id|>"},
	{"llama2", "<s>", "</s>"},
	{"codellama", "<s>", "</s>"},
	{"mistral-v0.2", "<s>", "</s>"},
	{"mistral-v1", "<s>", "</s>"},
	{"mistral-v3", "<s>", "</s>"},
	{"mistral-tekken", "<s>", "</s>"},
	{"gemma2", "<bos>", "<eos>"},
	{"gemma3", "<bos>", "<eos>"},
}

func model(tb testing.TB, name string) *Template {
	tb.Helper()
	for _, m := range models {
		if m.name == name {
			return load(tb, m.name, m.bos, m.eos)
		}
	}
	tb.Fatalf("no model %q", name)
	return nil
}

// Conversations of the rendering tests.
var (
	sysUser = []Message{{RoleSystem, "You are a helpful assistant"}, {RoleUser, "Hello"}}
	multi   = []Message{
		{RoleSystem, "You are a helpful assistant"},
		{RoleUser, "Hello"},
		{RoleAssistant, "Hi there"},
		{RoleUser, "Who are you"},
		{RoleAssistant, "   I am an assistant   "},
		{RoleUser, "Another question"},
	}
	noSystem = []Message{{RoleUser, "Hello"}, {RoleAssistant, "Hi there"}, {RoleUser, "Who are you"}}
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name, family string
		addsBOS      bool
		describe     []string // substrings of String()
	}{
		{"chatml", FamilyChatML, false, nil},
		{"qwen2", FamilyChatML, false, []string{`default system "You are a helpful assistant."`}},
		{"qwen2.5", FamilyChatML, false, []string{`default system "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."`}},
		{"qwen3", FamilyChatML, false, []string{"reasoning"}},
		{"llama3", FamilyLlama3, true, nil},
		{"llama3.1", FamilyLlama3, true, []string{`knowledge date "December 2023", today "26 Jul 2024"`}},
		{"llama3.2-if-system", FamilyLlama3, true, []string{`knowledge date "December 2023", today "26 Jul 2024", only with a system message`}},
		{"llama2", FamilyLlama2, true, []string{"<<SYS>>", "BOS before every user turn", "stripped", `user "[INST] "+content+" [/INST]"`}},
		{"codellama", FamilyLlama2, true, []string{"<<SYS>>", "BOS before every user turn", "stripped", `assistant " "+content+" "+EOS+""`}},
		{"mistral-v0.2", FamilyMistral, true, []string{"no system message", `assistant ""+content+""+EOS+""`}},
		{"mistral-v1", FamilyMistral, true, []string{"first user message", `user " [INST] "+content+" [/INST]"`, `assistant " "+content+""+EOS`}},
		{"mistral-v3", FamilyMistral, true, []string{"last user message", `user "[INST] "+content+"[/INST]"`}},
		{"mistral-tekken", FamilyMistral, true, []string{"last user message", `user "[INST]"+content+"[/INST]"`, `assistant ""+content`}},
		{"gemma2", FamilyGemma, true, nil},
		{"gemma3", FamilyGemma, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := model(t, tc.name)
			if tmpl.Family() != tc.family || tmpl.AddsBOS() != tc.addsBOS {
				t.Errorf("family %q, AddsBOS %v; want %q, %v", tmpl.Family(), tmpl.AddsBOS(), tc.family, tc.addsBOS)
			}
			for _, s := range tc.describe {
				if !strings.Contains(tmpl.String(), s) {
					t.Errorf("String() = %s; want it to contain %s", tmpl, s)
				}
			}
		})
	}
}

func TestDetectErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      error
		msg       string
	}{
		{"empty", "", ErrNoTemplate, "empty"},
		{"blank", " \n\t", ErrNoTemplate, "empty"},
		{"unknown", "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", ErrUnsupported, "ChatML/Qwen"},
		{"phi3", "phi3", ErrUnsupported, "Gemma (<start_of_turn>)"},
		{"mistral v7", "mistral-v7", ErrUnsupported, "[SYSTEM_PROMPT]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if b, err := os.ReadFile(filepath.Join("testdata", src+".jinja")); err == nil {
				src = string(b)
			}
			_, err := Parse(src, "<s>", "</s>")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Parse: %v; want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		model string
		msgs  []Message
		gen   bool
		want  string
	}{
		// ChatML: no BOS, contents as they are, no default system message.
		{"chatml", sysUser, true, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
		{"chatml", multi, true, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
		{"chatml", noSystem, false, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"},
		{"chatml", []Message{{RoleUser, "a"}, {RoleSystem, "late"}}, false, "<|im_start|>user\na<|im_end|>\n<|im_start|>system\nlate<|im_end|>\n"},
		// Qwen 2 and 2.5 put their default system message when there is none.
		{"qwen2", noSystem, true, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen2.5", noSystem, true, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen2.5", sysUser, true, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen2.5", []Message{{RoleUser, "a"}, {RoleAssistant, ""}}, false, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n"},
		// Qwen 3 drops the reasoning of assistant turns before the last user message and
		// keeps it after.
		{"qwen3", sysUser, true, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen3", noSystem, true, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen3", []Message{
			{RoleUser, "2+2?"}, {RoleAssistant, "<think>\nadd\n</think>\n\n4"}, {RoleUser, "and 3+3?"}, {RoleAssistant, "<think>sum</think>6"},
		}, false, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n<think>\nsum\n</think>\n\n6<|im_end|>\n"},
		{"qwen3", []Message{{RoleUser, "q"}, {RoleAssistant, "plain"}}, false, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nplain<|im_end|>\n"},
		// Llama 3: BOS, contents trimmed.
		{"llama3", sysUser, true, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3", multi, true, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3", noSystem, false, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"},
		// Llama 3.1: a system turn with the dates always.
		{"llama3.1", sysUser, true, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3.1", noSystem, true, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3.1", []Message{{RoleSystem, "  sys \n"}, {RoleUser, " u "}}, false, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nsys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu<|eot_id|>"},
		// A Llama 3.2 variant writes the system turn only for a system message.
		{"llama3.2-if-system", sysUser, true, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3.2-if-system", noSystem, false, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"},
		{"llama3.2-if-system", []Message{{RoleSystem, " \n"}, {RoleUser, "u"}}, false, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nu<|eot_id|>"},
		// Llama 2: <<SYS>> block, BOS before every user turn, contents stripped.
		{"llama2", sysUser, true, "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]"},
		{"llama2", multi, true, "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"},
		{"llama2", noSystem, false, "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]"},
		{"llama2", []Message{{RoleSystem, " s "}, {RoleUser, "  "}}, false, "<s>[INST] <<SYS>>\n s \n<</SYS>> [/INST]"},
		{"codellama", multi, true, "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"},
		{"codellama", []Message{{RoleUser, " q "}, {RoleAssistant, " a "}}, false, "<s>[INST] q [/INST] a </s>"},
		// Mistral v0.2 has no system message: it is folded into the first user message.
		{"mistral-v0.2", sysUser, true, "<s>[INST] You are a helpful assistant\n\nHello [/INST]"},
		{"mistral-v0.2", multi, false, "<s>[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]"},
		{"mistral-v0.2", noSystem, true, "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]"},
		// Mistral v1: spaces around [INST], system before the first user message.
		{"mistral-v1", sysUser, true, "<s> [INST] You are a helpful assistant\n\nHello [/INST]"},
		{"mistral-v1", multi, false, "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   </s> [INST] Another question [/INST]"},
		{"mistral-v1", noSystem, true, "<s> [INST] Hello [/INST] Hi there</s> [INST] Who are you [/INST]"},
		// Mistral v3: system before the last user message, assistant trimmed.
		{"mistral-v3", sysUser, true, "<s>[INST] You are a helpful assistant\n\nHello[/INST]"},
		{"mistral-v3", multi, true, "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] You are a helpful assistant\n\nAnother question[/INST]"},
		{"mistral-v3", noSystem, false, "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST]"},
		// Mistral Tekken: no spaces.
		{"mistral-tekken", sysUser, true, "<s>[INST]You are a helpful assistant\n\nHello[/INST]"},
		{"mistral-tekken", multi, true, "<s>[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]You are a helpful assistant\n\nAnother question[/INST]"},
		{"mistral-tekken", noSystem, false, "<s>[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]"},
		// Gemma: model for assistant, contents trimmed, system text opens the first user turn.
		{"gemma2", sysUser, true, "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"},
		{"gemma2", multi, true, "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
		{"gemma3", noSystem, false, "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n"},
		{"gemma3", []Message{{RoleSystem, " sys "}, {RoleUser, " u "}}, true, "<bos><start_of_turn>user\n sys \n\nu<end_of_turn>\n<start_of_turn>model\n"},
	} {
		got, err := model(t, tc.model).Render(tc.msgs, tc.gen)
		if err != nil || got != tc.want {
			t.Errorf("%s: Render(%q, %v) =\n%q, %v; want\n%q", tc.model, tc.msgs, tc.gen, got, err, tc.want)
		}
	}
}

// TestBOS checks that a model without a BOS token gets none, and the Stop strings.
func TestBOSAndStop(t *testing.T) {
	for _, tc := range []struct {
		model, bos, eos string
		addsBOS         bool
		stop            []string
	}{
		{"chatml", "", "<|im_end|>", false, []string{"<|im_end|>"}},
		{"qwen2", "", "<|endoftext|>", false, []string{"<|im_end|>", "<|endoftext|>"}},
		{"llama3", "<|begin_of_text|>", "<|end_of_text|>", true, []string{"<|eot_id|>", "<|end_of_text|>"}},
		{"llama3", "", "", false, []string{"<|eot_id|>"}},
		{"llama2", "<s>", "</s>", true, []string{"</s>"}},
		{"mistral-v3", "", "", false, []string{"</s>"}},
		{"gemma3", "<bos>", "<eos>", true, []string{"<end_of_turn>", "<eos>"}},
	} {
		tmpl := load(t, tc.model, tc.bos, tc.eos)
		if tmpl.AddsBOS() != tc.addsBOS || strings.Join(tmpl.Stop(), " ") != strings.Join(tc.stop, " ") {
			t.Errorf("%s with BOS %q, EOS %q: AddsBOS %v, Stop %q; want %v, %q", tc.model, tc.bos, tc.eos, tmpl.AddsBOS(), tmpl.Stop(), tc.addsBOS, tc.stop)
		}
		got, err := tmpl.Render(sysUser, true)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.AddsBOS() != (tc.bos != "" && strings.HasPrefix(got, tc.bos)) {
			t.Errorf("%s: AddsBOS %v but the prompt starts %.20q", tc.model, tmpl.AddsBOS(), got)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		model string
		msgs  []Message
		msg   string
	}{
		{"chatml", nil, "no messages"},
		{"llama3", []Message{{RoleUser, "a"}, {"tool", "b"}}, `message 1 has role "tool"`},
		{"gemma3", []Message{{"", "a"}}, `message 0 has role ""`},
		{"mistral-v1", []Message{{RoleUser, "a"}, {RoleUser, "b"}}, `message 1 is "user" where the mistral template needs "assistant"`},
		{"mistral-v1", []Message{{RoleAssistant, "a"}}, `message 0 is "assistant" where the mistral template needs "user"`},
		{"llama2", []Message{{RoleSystem, "s"}, {RoleAssistant, "a"}}, `message 1 is "assistant"`},
		{"llama2", []Message{{RoleUser, "a"}, {RoleSystem, "s"}}, "message 1 is a system message; the llama2 template takes one, as the first message"},
		{"gemma2", []Message{{RoleSystem, "s"}}, "a system message alone"},
		{"gemma3", []Message{{RoleSystem, "s"}, {RoleSystem, "t"}, {RoleUser, "u"}}, "message 1 is a system message"},
		{"mistral-v3", []Message{{RoleSystem, "s"}, {RoleUser, "u"}, {RoleAssistant, "a"}}, "last user message"},
	} {
		_, err := model(t, tc.model).Render(tc.msgs, true)
		if !errors.Is(err, ErrInvalidMessages) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Render(%q): %v; want ErrInvalidMessages mentioning %q", tc.model, tc.msgs, err, tc.msg)
		}
	}
}

func TestPyStrip(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		lead    int
	}{
		{"", "", 0},
		{"  ", "", 2},
		{"a", "a", 0},
		{" \t\na b\r\n", "a b", 3},
		{"\x1c\x1fa\x1e", "a", 2},       // Python counts the information separators as space
		{"\u00a0\u3000a\u2029", "a", 5}, // and Unicode spaces
		{"\x00a\x00", "\x00a\x00", 0},
	} {
		out, lead := pyStrip(tc.in)
		if out != tc.out || lead != tc.lead {
			t.Errorf("pyStrip(%q) = %q, %d; want %q, %d", tc.in, out, lead, tc.out, tc.lead)
		}
	}
}
