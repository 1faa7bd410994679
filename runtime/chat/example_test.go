package chat_test

import (
	"fmt"
	"log"

	"squeeze/runtime/chat"
)

// A ChatML template as Hugging Face models carry it.
const chatml = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

func ExampleTemplate_Render() {
	t, err := chat.Parse(chatml, "", "<|im_end|>")
	if err != nil {
		log.Fatal(err)
	}
	prompt, err := t.Render([]chat.Message{
		{Role: chat.RoleSystem, Content: "Answer briefly."},
		{Role: chat.RoleUser, Content: "What is Go?"},
	}, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %q\nstop at %q\n", t.Family(), prompt, t.Stop())
	// Output:
	// chatml: "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat is Go?<|im_end|>\n<|im_start|>assistant\n"
	// stop at ["<|im_end|>"]
}

func ExampleTemplate_SplitContext() {
	t, err := chat.Parse(chatml, "", "<|im_end|>")
	if err != nil {
		log.Fatal(err)
	}
	// The fixed context becomes the system message; the client's system text follows it.
	s, err := t.SplitContext("==== a.go ====\npackage a\n", []chat.Message{
		{Role: chat.RoleSystem, Content: "Answer briefly."},
		{Role: chat.RoleUser, Content: "What does package a do?"},
	}, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("before:  %q\ncontext: %q\nafter:   %q\n", s.Before, s.Context, s.After)
	// Output:
	// before:  "<|im_start|>system\n"
	// context: "==== a.go ====\npackage a\n"
	// after:   "\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat does package a do?<|im_end|>\n<|im_start|>assistant\n"
}
