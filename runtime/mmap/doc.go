// Package mmap maps files read-only into memory, so that large weights and artifacts are
// read in place (paged in by the kernel) instead of copied into the Go heap. Where the
// system has no mmap, or the file is not a regular file, it is read into memory instead.
package mmap
