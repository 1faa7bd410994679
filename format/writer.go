package format

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// SectionOptions tune how Writer.Add stores a section.
type SectionOptions struct {
	// Compress asks for zstd compression. The compressed form is kept only when it saves
	// at least 1/16 of the bytes; otherwise the section is stored uncompressed, so that
	// readers can use it in place. Leave it false for data that does not compress (already
	// quantized codes) or that readers want zero-copy from the mapping.
	Compress bool
}

// Writer writes an artifact. Create starts one in a temporary file beside the destination;
// Add appends sections in order; Commit finishes the file and renames it onto the
// destination; Abort removes it. The destination path therefore either keeps its old
// content or holds a complete artifact, never a partial one.
//
// A Writer is not safe for concurrent use. Its output depends only on the sections added
// (names, bytes, options, order): the same calls give a byte-identical file.
type Writer struct {
	path string
	tmp  string
	f    *os.File
	bw   *bufio.Writer

	off      uint64 // bytes written so far
	sections []SectionInfo
	names    map[string]struct{}

	err   error // the first write error; the writer is broken after it
	state writerState
}

type writerState uint8

const (
	writerOpen writerState = iota
	writerCommitted
	writerAborted
)

// Create starts an artifact to be committed at path. The file is written to a temporary
// file in the same directory, named "." + base name + ".tmp" + a random suffix, so that
// Commit can rename it atomically. Callers should `defer w.Abort()` right away: it removes
// the temporary file on every early return and does nothing after Commit.
func Create(path string) (*Writer, error) {
	dir, base := filepath.Split(path)
	if base == "" {
		return nil, fmt.Errorf("format: create %q: not a file name", path)
	}
	var f *os.File
	var tmp string
	for range 100 {
		tmp = filepath.Join(dir, "."+base+".tmp"+strconv.FormatUint(rand.Uint64(), 36))
		var err error
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("format: create %s: %w", path, err)
		}
		f = nil
	}
	if f == nil {
		return nil, fmt.Errorf("format: create %s: no free temporary file name", path)
	}
	w := &Writer{path: path, tmp: tmp, f: f, bw: bufio.NewWriterSize(f, 1<<20), names: map[string]struct{}{}}
	w.write(appendHeader(nil, Version))
	if w.err != nil {
		err := w.err
		w.Abort()
		return nil, err
	}
	return w, nil
}

// write appends b to the file, recording the first error.
func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("format: write %s: %w", w.tmp, err)
		return
	}
	w.off += uint64(len(b))
}

// usable returns why the writer cannot take more calls, or nil.
func (w *Writer) usable() error {
	switch w.state {
	case writerCommitted:
		return errors.New("format: writer already committed")
	case writerAborted:
		return errors.New("format: writer aborted")
	}
	return w.err
}

// Add appends a section holding data. Names must be unique, 1 to MaxNameLen bytes of ASCII
// letters, digits, '.', '_' and '-'. An invalid or repeated name is refused and the writer
// stays usable; after a write error every later call fails and only Abort is useful.
// Add does not retain data.
func (w *Writer) Add(name string, data []byte, opts SectionOptions) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	if _, dup := w.names[name]; dup {
		return fmt.Errorf("format: section %q added twice", name)
	}
	stored, comp := data, CompressionNone
	if opts.Compress && len(data) > 0 {
		z, err := compress(data)
		if err != nil {
			return err
		}
		if z != nil && compressPays(len(z), len(data)) {
			stored, comp = z, CompressionZstd
		}
	}
	off := alignUp(w.off)
	w.write(make([]byte, off-w.off))
	w.write(stored)
	if w.err != nil {
		return w.err
	}
	w.names[name] = struct{}{}
	w.sections = append(w.sections, SectionInfo{
		Name: name, Offset: int64(off), StoredSize: int64(len(stored)), RawSize: int64(len(data)),
		Compression: comp, Checksum: checksum(stored),
	})
	return nil
}

// Sections returns the sections added so far, in order.
func (w *Writer) Sections() []SectionInfo { return slices.Clone(w.sections) }

// Commit writes the index and trailer, syncs the file to disk, renames it onto the path
// given to Create (replacing any file there) and syncs the directory. On any error the
// temporary file is removed and the destination is left as it was. Commit may be called
// once; the Writer is finished after it either way.
func (w *Writer) Commit() error {
	if err := w.usable(); err != nil {
		w.Abort()
		return err
	}
	index := appendIndex(nil, w.sections)
	// Read the index back as a reader would before writing it: a writer that produces an
	// index its own reader refuses must not leave an artifact behind.
	if back, err := parseIndex(index, w.off); err != nil || !slices.Equal(back, w.sections) {
		w.Abort()
		return fmt.Errorf("format: internal error: the index written does not read back (%v)", err)
	}
	w.write(index)
	w.write(appendTrailer(nil, w.off-uint64(len(index)), uint64(len(index)), checksum(index), Version))
	if w.err != nil {
		err := w.err
		w.Abort()
		return err
	}
	if err := w.finish(); err != nil {
		w.Abort()
		return err
	}
	w.state = writerCommitted
	if err := syncDir(filepath.Dir(w.path)); err != nil {
		return fmt.Errorf("format: %s is complete, but syncing its directory failed: %w", w.path, err)
	}
	return nil
}

// finish flushes, syncs, closes and renames the temporary file.
func (w *Writer) finish() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("format: write %s: %w", w.tmp, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("format: sync %s: %w", w.tmp, err)
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("format: close %s: %w", w.tmp, err)
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	return nil
}

// Abort discards the artifact: it closes and removes the temporary file, leaving the
// destination path untouched. It does nothing after Commit or a previous Abort, so it is
// safe to defer. The error is that of removing the temporary file.
func (w *Writer) Abort() error {
	if w.state != writerOpen {
		return nil
	}
	w.state = writerAborted
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("format: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable. File systems that cannot sync a directory are
// not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}
