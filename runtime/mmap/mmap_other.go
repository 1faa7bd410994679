//go:build !(aix || darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || solaris)

package mmap

import (
	"io"
	"os"
)

// File reads the whole file into memory: this system has no mmap support here.
func File(fd *os.File) (data []byte, unmap func() error, err error) {
	data, err = io.ReadAll(fd)
	return data, nil, err
}
