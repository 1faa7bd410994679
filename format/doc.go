// Package format reads and writes squeeze artifacts: single files made of named sections,
// with a checksum per section, optional zstd compression, and a version number. The byte
// layout is specified in docs/FORMAT.md; what the sections hold is defined by the
// precompute package on top of this container.
//
// # Layout
//
// A file is a 64-byte header (magic, version, zero padding), the sections' stored bytes
// (each at a multiple of 64 bytes, zero padding between them), an index (name, offset,
// sizes, compression and CRC-32C of each section) and a 32-byte trailer (index offset,
// length and CRC-32C, version, magic). Everything is little-endian. The index sits at the
// end so that sections can be written as they are produced.
//
// # Writing
//
// Create starts a Writer on a temporary file next to the destination; Add appends
// sections; Commit writes the index and trailer, syncs, and renames the file into place;
// Abort (deferred) removes the temporary file on every other path. The output is a
// function of the sections added: identical calls give identical bytes.
//
//	w, err := format.Create("repo.sqz")
//	if err != nil {
//		return err
//	}
//	defer w.Abort()
//	if err := w.Add("tokens", tokens, format.SectionOptions{Compress: true}); err != nil {
//		return err
//	}
//	return w.Commit()
//
// # Reading
//
// Open maps a file read-only and checks its whole structure (magic, version, trailer,
// index checksum, section placement, zero padding) before returning; Parse does the same
// for bytes in memory. Section verifies one section's checksum on first use and returns
// its raw bytes: a view of the mapping for uncompressed sections, a decompressed copy for
// compressed ones. Errors for bad files wrap ErrNotArtifact, ErrVersion or ErrCorrupt and
// are *Error values that say where the problem is.
//
// # Payloads
//
// Encoder and Decoder write and read section payloads (numbers, strings, aligned arrays)
// so that the packages defining sections do not hand-roll binary encodings. Decoder
// checks every read against the bytes that remain and can return arrays as zero-copy
// views of a mapped file.
package format
