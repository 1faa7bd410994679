package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testSection is one section of a test artifact.
type testSection struct {
	name     string
	data     []byte
	compress bool
}

// writeArtifact writes secs to path and fails the test on any error.
func writeArtifact(t testing.TB, path string, secs []testSection) {
	t.Helper()
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, s := range secs {
		if err := w.Add(s.name, s.data, SectionOptions{Compress: s.compress}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// artifactBytes returns the bytes of an artifact holding secs.
func artifactBytes(t testing.TB, secs []testSection) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.sqz")
	writeArtifact(t, path, secs)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// randomBytes returns n pseudo-random (incompressible) bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textBytes returns n bytes of repetitive text, which zstd compresses well.
func textBytes(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString("func Example")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("() error { return nil }\n")
	}
	return b.Bytes()[:n]
}

// smallSections are the sections of the small artifact the corruption tests damage: an
// uncompressed one, a compressed one, an empty one, and one whose compression does not pay.
func smallSections() []testSection {
	return []testSection{
		{name: "header", data: []byte("model fingerprint and settings")},
		{name: "text", data: textBytes(300), compress: true},
		{name: "empty", data: nil},
		{name: "layer.0", data: randomBytes(1, 70), compress: true},
	}
}

// isFileError reports whether err wraps one of the sentinels a bad file gives.
func isFileError(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotArtifact) || errors.Is(err, ErrVersion)
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	large := 8 << 20
	if testing.Short() {
		large = 1 << 20
	}
	secs := []testSection{
		{name: "header", data: []byte{1, 2, 3}},
		{name: "empty", data: nil},
		{name: "empty.z", data: []byte{}, compress: true},
		{name: "tokens", data: textBytes(100_000), compress: true},
		{name: "random.z", data: randomBytes(2, 5000), compress: true},
		{name: "one", data: []byte{0}},
		{name: "large", data: randomBytes(3, large)},
		{name: "large.z", data: textBytes(large), compress: true},
		{name: "zeros.z", data: make([]byte, 4<<20), compress: true},
	}
	for i := range 40 {
		secs = append(secs, testSection{name: "layer." + string(rune('a'+i%26)) + "-" + string(rune('0'+i/26)), data: randomBytes(uint64(10+i), i*37), compress: i%2 == 0})
	}
	wantComp := map[string]Compression{"tokens": CompressionZstd, "large.z": CompressionZstd, "zeros.z": CompressionZstd}
	path := filepath.Join(t.TempDir(), "rt.sqz")
	writeArtifact(t, path, secs)

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Version() != Version {
		t.Errorf("Version() = %d, want %d", r.Version(), Version)
	}
	infos := r.Sections()
	if len(infos) != len(secs) {
		t.Fatalf("%d sections, want %d", len(infos), len(secs))
	}
	for i, s := range secs {
		info := infos[i]
		if info.Name != s.name || info.RawSize != int64(len(s.data)) || info.Offset%Alignment != 0 {
			t.Errorf("section %d: info %+v, want name %q raw size %d at an aligned offset", i, info, s.name, len(s.data))
		}
		if info.Compression != wantComp[s.name] {
			t.Errorf("section %q: compression %v, want %v", s.name, info.Compression, wantComp[s.name])
		}
		if info.Compression == CompressionZstd && !compressPays(int(info.StoredSize), int(info.RawSize)) {
			t.Errorf("section %q kept zstd that saves too little: %d of %d bytes", s.name, info.StoredSize, info.RawSize)
		}
		got, err := r.Section(s.name)
		if err != nil {
			t.Fatalf("Section(%q): %v", s.name, err)
		}
		if !bytes.Equal(got, s.data) {
			t.Errorf("Section(%q): %d bytes differ from the %d written", s.name, len(got), len(s.data))
		}
		if lookup, ok := r.Lookup(s.name); !ok || lookup != info {
			t.Errorf("Lookup(%q) = %+v, %v", s.name, lookup, ok)
		}
	}
	if err := r.Verify(); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if _, err := r.Section("missing"); !errors.Is(err, ErrNoSection) {
		t.Errorf("Section(missing) = %v, want ErrNoSection", err)
	}
	st, _ := os.Stat(path)
	if r.Size() != st.Size() {
		t.Errorf("Size() = %d, file is %d bytes", r.Size(), st.Size())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Section("header"); !errors.Is(err, ErrClosed) {
		t.Errorf("Section after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestEmptyArtifact(t *testing.T) {
	data := artifactBytes(t, nil)
	if len(data) != headerSize+4+trailerSize {
		t.Errorf("an artifact without sections is %d bytes, want %d", len(data), headerSize+4+trailerSize)
	}
	r, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sections()) != 0 {
		t.Errorf("sections %v, want none", r.Sections())
	}
}

func TestDeterministic(t *testing.T) {
	secs := append(smallSections(), testSection{name: "big.z", data: textBytes(3 << 20), compress: true})
	a := artifactBytes(t, secs)
	b := artifactBytes(t, secs)
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same sections differ")
	}
}

func TestConcurrentSection(t *testing.T) {
	secs := []testSection{{name: "a", data: textBytes(1 << 16), compress: true}, {name: "b", data: randomBytes(4, 1<<16)}}
	r, err := Parse(artifactBytes(t, secs))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := secs[i%2]
			got, err := r.Section(s.name)
			if err != nil || !bytes.Equal(got, s.data) {
				t.Errorf("Section(%q): %v", s.name, err)
			}
		})
	}
	wg.Wait()
}

func TestTruncated(t *testing.T) {
	data := artifactBytes(t, smallSections())
	for n := range len(data) {
		_, err := Parse(data[:n:n])
		if err == nil {
			t.Fatalf("prefix of %d bytes parsed without error", n)
		}
		want := ErrCorrupt
		if n == 0 {
			want = ErrNotArtifact
		}
		if !errors.Is(err, want) {
			t.Fatalf("prefix of %d bytes: %v, want %v", n, err, want)
		}
	}
	grown := append(append([]byte{}, data...), 0)
	if _, err := Parse(grown); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a byte appended: %v, want ErrCorrupt", err)
	}
}

func TestBitFlips(t *testing.T) {
	data := artifactBytes(t, smallSections())
	r, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	// Name the region of each byte, to report which one a missed flip was in.
	region := make([]string, len(data))
	for i := range region {
		region[i] = "padding"
	}
	for i := range 12 {
		region[i] = "header"
	}
	for _, s := range r.Sections() {
		for i := s.Offset; i < s.Offset+s.StoredSize; i++ {
			region[i] = "payload of " + s.Name
		}
	}
	indexOff := binary.LittleEndian.Uint64(data[len(data)-trailerSize:])
	for i := int(indexOff); i < len(data); i++ {
		region[i] = "index"
		if i >= len(data)-trailerSize {
			region[i] = "trailer"
		}
	}
	counts := map[string]int{}
	buf := make([]byte, len(data))
	for i := range data {
		for bit := range 8 {
			copy(buf, data)
			buf[i] ^= 1 << bit
			err := parseAndVerify(buf)
			if err == nil {
				t.Fatalf("flip of bit %d at offset %d (%s) not detected", bit, i, region[i])
			}
			if !isFileError(err) {
				t.Fatalf("flip at offset %d (%s): %v wraps no sentinel", i, region[i], err)
			}
			counts[strings.Fields(region[i])[0]]++
		}
	}
	for _, reg := range []string{"header", "padding", "payload", "index", "trailer"} {
		if counts[reg] == 0 {
			t.Errorf("no flips in region %s: the test file lacks it", reg)
		}
	}
}

// parseAndVerify parses data and verifies every section.
func parseAndVerify(data []byte) error {
	r, err := Parse(data)
	if err != nil {
		return err
	}
	return r.Verify()
}

func TestErrorNamesSectionAndOffset(t *testing.T) {
	data := artifactBytes(t, smallSections())
	r, _ := Parse(data)
	info, _ := r.Lookup("header")
	data[info.Offset+3] ^= 0x10
	r, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Section("header")
	var fe *Error
	if !errors.As(err, &fe) || fe.Offset != info.Offset || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Section on a damaged payload: %v", err)
	}
	want := `format: section "header" at offset 64: checksum mismatch`
	if !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), ": artifact is corrupt") {
		t.Errorf("error %q, want it to start %q and end with the sentinel", err, want)
	}
	// Other sections of the file are still readable.
	if _, err := r.Section("text"); err != nil {
		t.Errorf("an undamaged section: %v", err)
	}
}

func TestVersion(t *testing.T) {
	data := artifactBytes(t, smallSections())
	setVersion := func(b []byte, header, trailer uint32) []byte {
		b = append([]byte{}, b...)
		binary.LittleEndian.PutUint32(b[8:], header)
		binary.LittleEndian.PutUint32(b[len(b)-12:], trailer)
		return b
	}
	tests := []struct {
		name            string
		header, trailer uint32
		want            error
	}{
		{"newer", Version + 1, Version + 1, ErrVersion},
		{"much newer", 1 << 30, 1 << 30, ErrVersion},
		{"zero", 0, 0, ErrCorrupt},
		{"header only", Version + 1, Version, ErrCorrupt},
		{"trailer only", Version, Version + 1, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(setVersion(data, tt.header, tt.trailer))
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	// A newer file is recognized from its first 12 and last 12 bytes alone, whatever lies
	// between.
	newer := setVersion(append(append(append([]byte{}, data[:12]...), "a future layout"...), data[len(data)-12:]...), Version+1, Version+1)
	if _, err := Parse(newer); !errors.Is(err, ErrVersion) {
		t.Errorf("a newer file of another layout: %v, want ErrVersion", err)
	}
}

func TestForeignFiles(t *testing.T) {
	tests := map[string][]byte{
		"empty":    nil,
		"gguf":     append([]byte("GGUF\x03\x00\x00\x00"), make([]byte, 100)...),
		"text":     []byte("package main\n\nfunc main() {}\n"),
		"zstd":     {0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0},
		"one byte": {0x89 ^ 1},
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(data); !errors.Is(err, ErrNotArtifact) {
				t.Errorf("got %v, want ErrNotArtifact", err)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "foreign")
	if err := os.WriteFile(path, tests["text"], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if !errors.Is(err, ErrNotArtifact) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(foreign) = %v, want ErrNotArtifact naming the path", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want os.ErrNotExist", err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrNotArtifact) {
		t.Errorf("Open(empty file) = %v, want ErrNotArtifact", err)
	}
}

// A hand-built file whose structure is damaged in ways a bit flip cannot reach: each must be
// refused by Parse with ErrCorrupt.
func TestStructuralChecks(t *testing.T) {
	build := func(secs []SectionInfo, payload []byte) []byte {
		b := appendHeader(nil, Version)
		b = append(b, payload...)
		idxOff := uint64(len(b))
		idx := appendIndex(nil, secs)
		b = append(b, idx...)
		return appendTrailer(b, idxOff, uint64(len(idx)), checksum(idx), Version)
	}
	payload := []byte("abcdefgh")
	good := SectionInfo{Name: "a", Offset: 64, StoredSize: 8, RawSize: 8, Checksum: checksum(payload)}
	if _, err := Parse(build([]SectionInfo{good}, payload)); err != nil {
		t.Fatalf("the undamaged hand-built file: %v", err)
	}
	with := func(f func(*SectionInfo)) []SectionInfo {
		s := good
		f(&s)
		return []SectionInfo{s}
	}
	tests := map[string][]SectionInfo{
		"misaligned offset":  with(func(s *SectionInfo) { s.Offset = 65 }),
		"past the index":     with(func(s *SectionInfo) { s.StoredSize = 9; s.RawSize = 9 }),
		"short of the index": with(func(s *SectionInfo) { s.StoredSize = 7; s.RawSize = 7 }),
		"raw size differs":   with(func(s *SectionInfo) { s.RawSize = 9 }),
		"unknown method":     with(func(s *SectionInfo) { s.Compression = 7 }),
		"zstd not smaller":   with(func(s *SectionInfo) { s.Compression = CompressionZstd }),
		"zstd too large":     with(func(s *SectionInfo) { s.Compression = CompressionZstd; s.RawSize = 8<<15 + 1 }),
		"bad name":           with(func(s *SectionInfo) { s.Name = "a b" }),
		"duplicate name":     {{Name: "a", Offset: 64, Checksum: checksum(nil)}, good},
	}
	for name, secs := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(build(secs, payload)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
	zstdOK := with(func(s *SectionInfo) { s.Compression = CompressionZstd; s.RawSize = 8 << 15 })
	r, err := Parse(build(zstdOK, payload))
	if err != nil {
		t.Fatalf("a zstd section at the ratio bound: %v", err)
	}
	if _, err := r.Section("a"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a zstd section that is not zstd: %v, want ErrCorrupt", err)
	}
}

// TestSmallCompressedSection: the zstd encoder leaves the frame content size out of tiny
// frames, which readers refuse; the writer must then store the section raw, never write a
// section its own reader rejects.
func TestSmallCompressedSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "small.sqz")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	small := bytes.Repeat([]byte("ab"), 60) // compresses well, under 256 bytes
	if err := w.Add("small", small, SectionOptions{Compress: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Section("small")
	if err != nil {
		t.Fatalf("reading a small compressed section: %v", err)
	}
	if !bytes.Equal(got, small) {
		t.Fatal("section bytes differ")
	}
}
