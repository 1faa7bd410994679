package mmap

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// TestHuge checks that Huge returns the file's bytes, for a file large enough to be
// copied into huge pages (of a size that is not a whole number of them), a small one
// (mapped), an empty one and a pipe (read), and that the large file's memory is
// read-only where it is not on the heap.
func TestHuge(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{MinHuge + 12345, 4096 + 7, 0} {
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(r.Uint32())
		}
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, release, err := Huge(fd)
		fd.Close()
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(got, want) || len(got) != size {
			t.Fatalf("%d bytes: Huge returned %d bytes that differ from the file", size, len(got))
		}
		// Memory from a mapping or huge pages (release set) is read-only; a file read
		// into the heap (systems without mmap) is not.
		if size >= MinHuge && release != nil {
			if !faults(func() { got[size/2]++ }) {
				t.Errorf("%d bytes: writing to the memory did not fault", size)
			}
		}
		if release != nil {
			if err := release(); err != nil {
				t.Fatal(err)
			}
		}
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		pw.Write([]byte("through a pipe"))
		pw.Close()
	}()
	got, _, err := Huge(pr)
	pr.Close()
	if err != nil || string(got) != "through a pipe" {
		t.Fatalf("pipe: %q, %v", got, err)
	}
}

// faults reports whether f faults on a memory access.
func faults(f func()) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() { faulted = recover() != nil }()
	f()
	return false
}
