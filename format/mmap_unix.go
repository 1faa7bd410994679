//go:build aix || darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || solaris

package format

import (
	"fmt"
	"io"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps f read-only. An empty file maps to nil (mmap refuses length 0); a file that
// cannot be mapped (a pipe, a character device) is read into memory.
func mapFile(f *os.File) (data []byte, unmap func() error, err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		data, err = io.ReadAll(f)
		return data, nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, nil, nil
	}
	if size < 0 || size > math.MaxInt {
		return nil, nil, fmt.Errorf("file size %d does not fit in memory", size)
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return unix.Munmap(data) }, nil
}
