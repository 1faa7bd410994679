package gguf

import (
	"squeeze/runtime/mmap"

	"fmt"
	"os"
)

// Open memory-maps the GGUF file at path read-only and parses it (see Parse). Tensor data
// stay in the mapping: opening a model costs address space, not heap. A file of at least
// mmap.MinHuge bytes is instead read into memory backed by transparent huge pages where
// the system offers them (mmap.Huge), also read-only: decoding reads every weight for
// every token, and in 2 MB pages those reads miss the TLB far less often. Close the File
// to release the memory. On systems without mmap support the file is read into memory.
func Open(path string) (*File, error) { return open(path, mmap.Huge) }

// OpenMapped is Open without the copy into huge pages: the tensor data stay in the
// file's mapping, which every process that maps the file shares (Open's copy is the
// process's own), at the price of slower decoding.
func OpenMapped(path string) (*File, error) { return open(path, mmap.File) }

// open reads the file at path into memory with load and parses it.
func open(path string, load func(*os.File) ([]byte, func() error, error)) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fd.Close()
	data, unmap, err := load(fd)
	if err != nil {
		return nil, fmt.Errorf("gguf: map %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.unmap = unmap
	return f, nil
}
