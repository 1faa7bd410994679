//go:build !linux

package mmap

import "os"

// Huge is File here: transparent huge pages are a Linux feature.
func Huge(fd *os.File) (data []byte, release func() error, err error) { return File(fd) }
