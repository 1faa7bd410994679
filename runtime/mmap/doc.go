// Package mmap maps files read-only into memory, so that large weights and artifacts are
// read in place (paged in by the kernel) instead of copied into the Go heap. Where the
// system has no mmap, or the file is not a regular file, it is read into memory instead.
// Huge instead copies a large file into memory backed by transparent huge pages, for
// weights that are streamed end to end again and again.
package mmap

// MinHuge is the smallest file Huge copies into huge pages: a smaller one needs few
// TLB entries as it is.
const MinHuge = 8 << 20
