//go:build linux

package mmap

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page (x86-64, and arm64 with 4 KB pages).
const hugePage = 2 << 20

// Huge reads the regular file fd into anonymous memory that the kernel backs with
// transparent huge pages, then makes that memory read-only. Weights read from end to
// end for every decoded token then take one TLB entry per 2 MB instead of one per
// 4 KB page. It returns File(fd) instead where that would not help or cannot be done:
// a file smaller than MinHuge, a file that is not regular, a system whose transparent
// huge pages are disabled, or memory the kernel refuses. release frees the memory.
func Huge(fd *os.File) (data []byte, release func() error, err error) {
	st, err := fd.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() || size < MinHuge || int64(int(size)) != size || !hugePagesOffered() {
		return File(fd)
	}
	n := (int(size) + hugePage - 1) &^ (hugePage - 1)
	raw, err := unix.MmapPtr(-1, 0, nil, uintptr(n+hugePage), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return File(fd)
	}
	// The huge pages cover aligned 2 MB ranges: keep the aligned part, return the rest.
	off := (hugePage - int(uintptr(raw)%hugePage)) % hugePage
	base := unsafe.Add(raw, off)
	if off > 0 {
		unix.MunmapPtr(raw, uintptr(off))
	}
	if tail := hugePage - off; tail > 0 {
		unix.MunmapPtr(unsafe.Add(base, n), uintptr(tail))
	}
	buf := unsafe.Slice((*byte)(base), n)
	release = func() error { return unix.MunmapPtr(base, uintptr(n)) }
	if err := unix.Madvise(buf, unix.MADV_HUGEPAGE); err != nil {
		release()
		return File(fd)
	}
	if got, err := fd.ReadAt(buf[:size], 0); got != int(size) {
		release()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank since Stat
		}
		return nil, nil, fmt.Errorf("read %d of %d bytes into huge pages: %w", got, size, err)
	}
	if err := unix.Mprotect(buf, unix.PROT_READ); err != nil {
		release()
		return nil, nil, err
	}
	return buf[:size:size], release, nil
}

// hugePagesOffered reports whether the kernel backs memory that asks for transparent
// huge pages with them ("always" or "madvise" mode).
var hugePagesOffered = sync.OnceValue(func() bool {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && (bytes.Contains(mode, []byte("[always]")) || bytes.Contains(mode, []byte("[madvise]")))
})
