package format

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestChatRoundTrip writes artifacts with and without chat settings and reads them back,
// whole and header only.
func TestChatRoundTrip(t *testing.T) {
	for _, c := range []*ChatInfo{
		nil,
		{Family: "chatml", Before: "<|im_start|>system\n"},
		{Family: "gemma", Before: ""},
	} {
		a := testArtifact(t, 2, 1, 4, 9, 1)
		if c != nil {
			a.Text = c.Before + a.Text
			a.Header.Settings.Chat = c
		}
		path, data := writeTestArtifact(t, a)
		b, err := ReadArtifact(path)
		if err != nil {
			t.Fatal(err)
		}
		sameArtifact(t, a, b)
		b.Close()
		p, err := ParseArtifact(data)
		if err != nil {
			t.Fatal(err)
		}
		sameArtifact(t, a, p)

		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := ReadHeader(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		switch got := h.Settings.Chat; {
		case c == nil && got != nil:
			t.Errorf("an artifact without chat settings read back with %+v", got)
		case c != nil && (got == nil || *got != *c):
			t.Errorf("ReadHeader: chat settings %+v, want %+v", got, c)
		}
	}
}

// TestChatRefused checks that inconsistent chat settings are refused on write, and a
// damaged chat section on read.
func TestChatRefused(t *testing.T) {
	a := testArtifact(t, 1, 1, 4, 5, 1)
	for _, c := range []*ChatInfo{
		{Family: "chatml", Before: "<|im_start|>system\n"}, // the text does not start with it
		{Family: "", Before: ""},
	} {
		a.Header.Settings.Chat = c
		if err := WriteArtifact(filepath.Join(t.TempDir(), "a.sqz"), a); err == nil {
			t.Errorf("chat settings %+v for text %q: written", c, a.Text)
		}
	}

	// A section whose text is not the prefix of the artifact's: rewrite a valid
	// artifact's sections with another chat payload.
	a.Header.Settings.Chat = &ChatInfo{Family: "chatml", Before: "sys"}
	path, _ := writeTestArtifact(t, a)
	for name, payload := range map[string]func(*Encoder){
		"other prefix": func(e *Encoder) { encodeChat(e, &ChatInfo{Family: "chatml", Before: "xyz"}) },
		"no family":    func(e *Encoder) { encodeChat(e, &ChatInfo{Before: "sys"}) },
		"short":        func(e *Encoder) { e.Text("chatml") },
		"long":         func(e *Encoder) { encodeChat(e, a.Header.Settings.Chat); e.Bool(true) },
	} {
		damaged := rewriteSection(t, path, SectionChat, payload)
		if _, err := ReadArtifact(damaged); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

// rewriteSection copies the artifact at path with section name's payload replaced by what
// payload encodes, and returns the copy's path.
func rewriteSection(t *testing.T, path, name string, payload func(*Encoder)) string {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := filepath.Join(t.TempDir(), "rewritten.sqz")
	w, err := Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, s := range r.Sections() {
		data, err := r.Section(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name == name {
			var e Encoder
			payload(&e)
			data = e.Bytes()
		}
		if err := w.Add(s.Name, data, SectionOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return out
}
