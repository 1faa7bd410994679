package gguf

import (
	"squeeze/runtime/mmap"

	"fmt"
	"os"
)

// Open memory-maps the GGUF file at path read-only and parses it (see Parse). Tensor data
// stay in the mapping: opening a model costs address space, not heap. Close the File to
// unmap it. On systems without mmap support the file is read into memory instead.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fd.Close()
	data, unmap, err := mmap.File(fd)
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
