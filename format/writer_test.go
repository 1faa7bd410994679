package format

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// failingWriter accepts budget bytes, then fails.
type failingWriter struct {
	w      io.Writer
	budget int
}

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.budget {
		n, _ := f.w.Write(p[:f.budget])
		f.budget = 0
		return n, errDiskFull
	}
	f.budget -= len(p)
	return f.w.Write(p)
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sqz")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("a", textBytes(1000), SectionOptions{Compress: true}); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("while writing, the directory holds %v, want one temporary file", names)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Errorf("after Abort the directory holds %v", names)
	}
	if err := w.Add("b", nil, SectionOptions{}); err == nil {
		t.Error("Add after Abort succeeded")
	}
	if err := w.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Errorf("after Commit on an aborted writer the directory holds %v", names)
	}
}

func TestAbortAfterCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sqz")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Add("a", []byte("x"), SectionOptions{})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"a.sqz"}) {
		t.Errorf("after Commit and Abort the directory holds %v, want only a.sqz", names)
	}
	if err := w.Commit(); err == nil {
		t.Error("a second Commit succeeded")
	}
	if _, err := Open(path); err != nil {
		t.Errorf("the committed file: %v", err)
	}
}

func TestFailedWrite(t *testing.T) {
	// The file under the writer's buffer fails after budget bytes: in the first section,
	// in a later one, or in the index and trailer that Commit flushes.
	// With an even budget a previous file sits at the path and must survive unchanged; with
	// an odd one the path is free and must stay free.
	for _, budget := range []int{0, 101, 1 << 20, 1<<20 + 1<<19 + 1} {
		dir := t.TempDir()
		path := filepath.Join(dir, "a.sqz")
		old := []byte("the previous artifact")
		want := []string{"a.sqz"}
		if budget%2 == 0 {
			os.WriteFile(path, old, 0o644)
		} else {
			want = nil
		}
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		w.bw.Reset(&failingWriter{w: w.f, budget: budget})
		var addErr error
		for _, name := range []string{"a", "b", "c"} {
			if addErr = w.Add(name, randomBytes(5, 600<<10), SectionOptions{}); addErr != nil {
				break
			}
		}
		err = w.Commit()
		if err == nil {
			t.Fatalf("budget %d: Commit succeeded", budget)
		}
		if !errors.Is(err, errDiskFull) {
			t.Errorf("budget %d: Commit error %v does not wrap the write error", budget, err)
		}
		if addErr != nil && !errors.Is(addErr, errDiskFull) {
			t.Errorf("budget %d: Add error %v does not wrap the write error", budget, addErr)
		}
		if names := dirEntries(t, dir); !slices.Equal(names, want) {
			t.Errorf("budget %d: after a failed write the directory holds %v, want %v", budget, names, want)
		}
		if got, _ := os.ReadFile(path); want != nil && string(got) != string(old) {
			t.Errorf("budget %d: the previous file at the path was changed", budget)
		}
		w.Abort()
	}
}

func TestFailedRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sqz")
	// A non-empty directory at the path cannot be replaced by a rename.
	os.MkdirAll(filepath.Join(path, "x"), 0o755)
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	w.Add("a", []byte("x"), SectionOptions{})
	if err := w.Commit(); err == nil {
		t.Fatal("Commit onto a directory succeeded")
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"a.sqz"}) {
		t.Errorf("after a failed rename the directory holds %v", names)
	}
}

func TestCreateErrors(t *testing.T) {
	if _, err := Create(filepath.Join(t.TempDir(), "missing", "a.sqz")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create in a missing directory: %v", err)
	}
	if _, err := Create(t.TempDir() + "/"); err == nil {
		t.Error("Create of a directory path succeeded")
	}
}

func TestReplaceExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sqz")
	writeArtifact(t, path, []testSection{{name: "v", data: []byte("one")}})
	writeArtifact(t, path, []testSection{{name: "v", data: []byte("two")}})
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := r.Section("v"); string(got) != "two" {
		t.Errorf("after a second Commit the section holds %q, want %q", got, "two")
	}
}

func TestAddRefusesBadNames(t *testing.T) {
	w, err := Create(filepath.Join(t.TempDir(), "a.sqz"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Add("layer.0", nil, SectionOptions{}); err != nil {
		t.Fatal(err)
	}
	long := make([]byte, MaxNameLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, name := range []string{"", "layer.0", "a b", "a/b", "é", string(long)} {
		if err := w.Add(name, nil, SectionOptions{}); err == nil {
			t.Errorf("Add(%q) succeeded", name)
		}
	}
	if err := w.Add(string(long[:MaxNameLen]), []byte("ok"), SectionOptions{}); err != nil {
		t.Errorf("a name of MaxNameLen bytes: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("the writer is unusable after refused names: %v", err)
	}
	if got := len(w.Sections()); got != 2 {
		t.Errorf("%d sections, want 2", got)
	}
}
