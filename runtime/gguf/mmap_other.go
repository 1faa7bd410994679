//go:build !(aix || darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || solaris)

package gguf

import (
	"io"
	"os"
)

// mapFile reads the whole file into memory: this system has no mmap support here.
func mapFile(fd *os.File) (data []byte, unmap func() error, err error) {
	data, err = io.ReadAll(fd)
	return data, nil, err
}
