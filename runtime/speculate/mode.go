package speculate

import (
	"errors"
	"fmt"
)

// ErrMode means a speculation mode name is not one of Modes.
var ErrMode = errors.New("speculate: unknown mode")

// Mode says which draft sources a generation may use.
type Mode int

// The speculation modes.
const (
	// ModeOff decodes one token per pass, with no drafts.
	ModeOff Mode = iota
	// ModeAuto uses every draft source available and lets the Policy choose per pass,
	// falling back to plain decoding when none pays.
	ModeAuto
	// ModeNGram uses only prompt-lookup drafts from the fixed context and the text so far.
	ModeNGram
	// ModeEarly uses only drafts predicted from an early layer's hidden state.
	ModeEarly
)

// Modes are the names ParseMode accepts, in Mode order.
var Modes = []string{"off", "auto", "ngram", "early"}

// String returns the mode's name.
func (m Mode) String() string {
	if m >= 0 && int(m) < len(Modes) {
		return Modes[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode returns the mode named s (one of Modes), or an error wrapping ErrMode.
func ParseMode(s string) (Mode, error) {
	for i, name := range Modes {
		if s == name {
			return Mode(i), nil
		}
	}
	return ModeOff, fmt.Errorf("%w %q: want one of %v", ErrMode, s, Modes)
}

// Allows reports whether a generation in mode m may use drafts from a source named
// name ("ngram" or "early"; ModeAuto allows every source).
func (m Mode) Allows(name string) bool {
	switch m {
	case ModeAuto:
		return true
	case ModeNGram, ModeEarly:
		return name == m.String()
	}
	return false
}
