package gguf

import "errors"

// Sentinel errors. Every error Open and Parse return for bad input wraps one of these,
// so callers can tell a foreign file from a damaged one with errors.Is.
var (
	// ErrNotGGUF means the file does not start with the GGUF magic: it is some other file.
	ErrNotGGUF = errors.New("gguf: not a GGUF file")
	// ErrVersion means the file is GGUF but of a version this package cannot read.
	ErrVersion = errors.New("gguf: unsupported GGUF version")
	// ErrTruncated means the file ends before the data its header describes.
	ErrTruncated = errors.New("gguf: file is truncated")
	// ErrCorrupt means a length, count, offset or value in the file is impossible.
	ErrCorrupt = errors.New("gguf: file is corrupt")
	// ErrUnknownType means a tensor uses an element type this package does not know.
	ErrUnknownType = errors.New("gguf: unknown tensor type")
	// ErrNotFound means a metadata key or tensor the caller asked for is absent.
	ErrNotFound = errors.New("gguf: not found")
)
