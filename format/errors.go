package format

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error that Open, Parse, Reader.Section and Decoder return for bad
// input wraps exactly one of ErrNotArtifact, ErrVersion and ErrCorrupt, so a caller can tell
// a foreign file from a newer one from a damaged one with errors.Is.
var (
	// ErrNotArtifact means the file does not start with the artifact magic: it is some
	// other kind of file (or empty).
	ErrNotArtifact = errors.New("not a squeeze artifact")
	// ErrVersion means the file is an artifact of a container version this package does not
	// read, typically one written by a newer squeeze.
	ErrVersion = errors.New("unsupported artifact version")
	// ErrCorrupt means the file is an artifact but damaged: truncated, a checksum does not
	// match, or a length, offset, count or value is impossible.
	ErrCorrupt = errors.New("artifact is corrupt")
	// ErrNoSection means the artifact has no section of the requested name. The file is
	// fine; the caller asked for something it does not contain.
	ErrNoSection = errors.New("no such section")
	// ErrClosed means the Reader was used after Close.
	ErrClosed = errors.New("artifact reader is closed")
)

// Error describes where in an artifact a problem was found. It wraps one of the sentinel
// errors (ErrNotArtifact, ErrVersion or ErrCorrupt), reachable with errors.Is.
type Error struct {
	// Where names the region: "header", "trailer", "index", `section "layer.3"` for a
	// section's stored bytes, or `section "layer.3" data` for its decoded bytes (see
	// Decoder).
	Where string
	// Offset is the byte offset of the problem: from the start of the file, except for
	// "data" regions, where it counts from the start of the section's raw bytes.
	Offset int64
	// Reason says what is wrong, e.g. "checksum mismatch".
	Reason string
	// Err is the sentinel this error wraps.
	Err error
}

// Error formats the error as `format: WHERE at offset N: REASON: SENTINEL`.
func (e *Error) Error() string {
	return fmt.Sprintf("format: %s at offset %d: %s: %v", e.Where, e.Offset, e.Reason, e.Err)
}

// Unwrap returns the sentinel error.
func (e *Error) Unwrap() error { return e.Err }

// corrupt returns an *Error wrapping ErrCorrupt.
func corrupt(where string, off int64, format string, args ...any) error {
	return &Error{Where: where, Offset: off, Reason: fmt.Sprintf(format, args...), Err: ErrCorrupt}
}

// sectionWhere is the Where of a section's stored bytes.
func sectionWhere(name string) string { return fmt.Sprintf("section %q", name) }
