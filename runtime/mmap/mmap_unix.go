//go:build aix || darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || solaris

package mmap

import (
	"fmt"
	"io"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// File maps fd read-only. An empty file maps to nil (mmap rejects length 0); a pipe or
// other non-regular file, which cannot be mapped, is read into memory.
func File(fd *os.File) (data []byte, unmap func() error, err error) {
	st, err := fd.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		data, err = io.ReadAll(fd)
		return data, nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, nil, nil
	}
	if size < 0 || size > math.MaxInt {
		return nil, nil, fmt.Errorf("file size %d does not fit in memory", size)
	}
	data, err = unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return unix.Munmap(data) }, nil
}
