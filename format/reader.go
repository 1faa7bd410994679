package format

import (
	"squeeze/runtime/mmap"

	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// Reader reads an artifact. Open and Parse check the container's structure before they
// return: magic, version, trailer, index checksum, and every section's place in the file.
// A section's own checksum is verified the first time Section asks for it.
//
// A Reader is safe for concurrent use, except that Close must not run concurrently with
// other methods.
type Reader struct {
	data     []byte
	unmap    func() error
	version  uint32
	sections []SectionInfo
	byName   map[string]int
	loaded   []loadedSection
	closed   atomic.Bool
}

// loadedSection caches the outcome of verifying (and decompressing) one section.
type loadedSection struct {
	once sync.Once
	data []byte
	err  error
}

// Open maps the artifact at path read-only and checks its structure. Errors for a bad
// file wrap ErrNotArtifact, ErrVersion or ErrCorrupt and name the path. Close the Reader to
// release the mapping.
//
// The mapping reflects the file: it must not be modified or truncated while open (Writer
// never does that: it replaces files by rename).
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	defer f.Close()
	data, unmap, err := mmap.File(f)
	if err != nil {
		return nil, fmt.Errorf("format: map %s: %w", path, err)
	}
	r, err := Parse(data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.unmap = unmap
	return r, nil
}

// Parse reads an artifact held in memory, checking its structure as Open does. The Reader
// refers to data, which must not be modified while it is in use.
func Parse(data []byte) (*Reader, error) {
	version, secs, err := parse(data)
	if err != nil {
		return nil, err
	}
	r := &Reader{
		data:     data,
		version:  version,
		sections: secs,
		byName:   make(map[string]int, len(secs)),
		loaded:   make([]loadedSection, len(secs)),
	}
	for i, s := range secs {
		r.byName[s.Name] = i
	}
	return r, nil
}

// parse checks data's container structure and returns its version and sections.
func parse(data []byte) (uint32, []SectionInfo, error) {
	n := uint64(len(data))
	if n == 0 {
		return 0, nil, &Error{Where: "header", Offset: 0, Reason: "empty file", Err: ErrNotArtifact}
	}
	if !bytes.HasPrefix(magic[:], data[:min(n, 8)]) {
		return 0, nil, &Error{Where: "header", Offset: 0, Reason: "magic number mismatch", Err: ErrNotArtifact}
	}
	if n < 12 {
		return 0, nil, corrupt("header", int64(n), "file ends inside the header (%d bytes): truncated", n)
	}
	version := binary.LittleEndian.Uint32(data[8:])
	// The last 12 bytes, trailer version and magic, keep their place in every version, so a
	// complete file of a newer version is told apart from a damaged one.
	if n < 12+12 || !bytes.Equal(data[n-8:], magic[:]) {
		return 0, nil, corrupt("trailer", int64(n), "no trailer magic at the end of the %d-byte file: truncated or incompletely written", n)
	}
	if tv := binary.LittleEndian.Uint32(data[n-12:]); tv != version {
		return 0, nil, corrupt("trailer", int64(n-12), "trailer says version %d, header says %d", tv, version)
	}
	if version == 0 {
		return 0, nil, corrupt("header", 8, "version 0 does not exist")
	}
	if version > Version {
		return 0, nil, &Error{Where: "header", Offset: 8,
			Reason: fmt.Sprintf("version %d is newer than this squeeze reads (%d): upgrade squeeze", version, Version), Err: ErrVersion}
	}
	if n < headerSize+trailerSize {
		return 0, nil, corrupt("trailer", int64(n), "a %d-byte file cannot hold the header and trailer (%d bytes): truncated", n, headerSize+trailerSize)
	}
	if i := firstNonZero(data[12:headerSize]); i >= 0 {
		return 0, nil, corrupt("header", int64(12+i), "reserved header byte is not zero")
	}
	t := data[n-trailerSize:]
	indexOff := binary.LittleEndian.Uint64(t)
	indexLen := binary.LittleEndian.Uint64(t[8:])
	indexCRC := binary.LittleEndian.Uint32(t[16:])
	end := n - trailerSize
	if indexOff < headerSize || indexOff > end || indexLen != end-indexOff {
		return 0, nil, corrupt("trailer", int64(end), "index of %d bytes at offset %d does not end at the trailer (%d)", indexLen, indexOff, end)
	}
	index := data[indexOff:end]
	if got := checksum(index); got != indexCRC {
		return 0, nil, corrupt("index", int64(indexOff), "checksum mismatch (stored %08x, computed %08x)", indexCRC, got)
	}
	secs, err := parseIndex(index, indexOff)
	if err != nil {
		return 0, nil, err
	}
	// The padding in front of each section, and in front of the index, is zero: with that,
	// every byte of the file is covered by a check.
	prev := uint64(headerSize)
	for _, s := range secs {
		if i := firstNonZero(data[prev:s.Offset]); i >= 0 {
			return 0, nil, corrupt(sectionWhere(s.Name), int64(prev)+int64(i), "padding before the section is not zero")
		}
		prev = uint64(s.Offset + s.StoredSize)
	}
	return version, secs, nil
}

// firstNonZero returns the index of the first non-zero byte of b, or -1.
func firstNonZero(b []byte) int {
	for i, c := range b {
		if c != 0 {
			return i
		}
	}
	return -1
}

// Version returns the container format version of the file.
func (r *Reader) Version() uint32 { return r.version }

// Size returns the size of the file in bytes.
func (r *Reader) Size() int64 { return int64(len(r.data)) }

// Sections returns the sections in file order.
func (r *Reader) Sections() []SectionInfo { return slices.Clone(r.sections) }

// Lookup returns the index entry of the named section.
func (r *Reader) Lookup(name string) (SectionInfo, bool) {
	i, ok := r.byName[name]
	if !ok {
		return SectionInfo{}, false
	}
	return r.sections[i], true
}

// Section returns the raw bytes of the named section, after verifying its checksum (and,
// for a compressed section, decompressing it). The first call does the work; later calls
// return the same result.
//
// The bytes are shared and read-only: for an uncompressed section of a Reader from Open
// they are the file's mapping itself, where writing faults. They are valid until Close.
// A missing section gives an error wrapping ErrNoSection; a damaged one, ErrCorrupt.
func (r *Reader) Section(name string) ([]byte, error) {
	if r.closed.Load() {
		return nil, fmt.Errorf("format: section %q: %w", name, ErrClosed)
	}
	i, ok := r.byName[name]
	if !ok {
		return nil, fmt.Errorf("format: section %q: %w", name, ErrNoSection)
	}
	l := &r.loaded[i]
	l.once.Do(func() { l.data, l.err = r.load(r.sections[i]) })
	return l.data, l.err
}

// load verifies and decodes one section.
func (r *Reader) load(s SectionInfo) ([]byte, error) {
	stored := r.data[s.Offset : s.Offset+s.StoredSize : s.Offset+s.StoredSize]
	if got := checksum(stored); got != s.Checksum {
		return nil, corrupt(sectionWhere(s.Name), s.Offset, "checksum mismatch (stored %08x, computed %08x)", s.Checksum, got)
	}
	switch s.Compression {
	case CompressionNone:
		return stored, nil
	case CompressionZstd:
		raw, err := decompress(stored, s.RawSize)
		if err != nil {
			return nil, corrupt(sectionWhere(s.Name), s.Offset, "%v", err)
		}
		return raw, nil
	}
	return nil, corrupt(sectionWhere(s.Name), s.Offset, "unknown compression %d", s.Compression)
}

// Decoder returns a Decoder over the named section's raw bytes; see Section.
func (r *Reader) Decoder(name string) (*Decoder, error) {
	data, err := r.Section(name)
	if err != nil {
		return nil, err
	}
	return NewDecoder(name, data), nil
}

// Verify checks every section's checksum (and decompresses the compressed ones), returning
// the first error.
func (r *Reader) Verify() error {
	for _, s := range r.sections {
		if _, err := r.Section(s.Name); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the file mapping. Slices returned by Section for uncompressed sections
// must not be used after Close. Close is idempotent.
func (r *Reader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if r.unmap != nil {
		if err := r.unmap(); err != nil {
			return fmt.Errorf("format: unmap: %w", err)
		}
	}
	return nil
}
