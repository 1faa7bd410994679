// Package gguf reads and writes GGUF files, the model format of llama.cpp and Ollama.
//
// # Layout
//
// A GGUF file is little-endian throughout and has four parts:
//
//  1. A header: the magic "GGUF", a uint32 version (this package reads 2 and 3), a uint64
//     tensor count and a uint64 metadata count.
//  2. Metadata: that many key-value pairs. A key is a string (a uint64 byte length, then
//     the bytes, no terminator); then comes a uint32 value type and the value. Scalars are
//     stored as is (bools as one byte, 0 or 1), strings as above, and arrays as a uint32
//     element type, a uint64 count and the elements; array elements may be arrays.
//  3. Tensor infos: for each tensor its name (a string), a uint32 dimension count (at most
//     4), that many uint64 dims (innermost first: dims[0] is the row length), a uint32
//     element type (a ggml type id, see Type) and a uint64 offset into the data section.
//  4. The data section: it starts at the first multiple of the alignment after the tensor
//     infos, and every tensor offset is a multiple of the alignment. The alignment is the
//     metadata value general.alignment, or 32 without it.
//
// A tensor's rows are dims[0] elements long, encoded as dims[0]/BlockSize blocks of
// BlockBytes bytes each; the row count is the product of the other dims.
//
// # Reading
//
// Open memory-maps a file (a large one is read into huge pages outside the Go heap
// instead) and parses its header; tensor data stay there and Tensor returns slices of
// it, so loading a model does not copy its weights into the Go heap. Parse does the same
// for a file already in memory. Metadata are looked up with
// typed helpers (String, Uint, Float, Strings, ...) that fail with ErrNotFound when a key
// is absent and ErrCorrupt when its value has the wrong type.
//
// # Bad input
//
// Open and Parse treat the file as untrusted. Every count and length read from it is
// checked against the bytes that remain before anything is allocated, so a hostile header
// cannot make them allocate more than a small multiple of the file's size (under 16 times;
// a test checks the worst cases); sizes and offsets are computed with overflow checks;
// arrays may nest at most 8 deep. No input makes them panic (FuzzParse checks). Every
// error for bad input wraps one of ErrNotGGUF, ErrVersion, ErrTruncated, ErrCorrupt or
// ErrUnknownType and says what was wrong and, where it applies, at which byte or in which
// tensor. Duplicate metadata keys and duplicate tensor names are errors (ErrCorrupt).
//
// # Writing
//
// Writer builds GGUF version 3 files from metadata and tensors, for tests and synthetic
// models.
package gguf
