//go:build !(aix || darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || solaris)

package format

import (
	"io"
	"os"
)

// mapFile reads the whole file into memory: this system has no mmap support here.
func mapFile(f *os.File) (data []byte, unmap func() error, err error) {
	data, err = io.ReadAll(f)
	return data, nil, err
}
