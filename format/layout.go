package format

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Version is the container format version this package writes, and the newest it reads.
// docs/FORMAT.md lists what each version changed.
const Version uint32 = 1

// Alignment is the file offset alignment, in bytes, of every section's stored bytes. A
// section stored uncompressed can be used in place from a memory mapping, and its
// 2-, 4- and 8-byte arrays (see Encoder) are then naturally aligned in memory.
const Alignment = 64

// MaxNameLen is the longest section name, in bytes.
const MaxNameLen = 255

const (
	headerSize  = 64 // magic, version, zero padding up to the first section
	trailerSize = 32 // index offset, index length, index CRC, version, magic
	// minEntrySize is an index entry with a one-byte name.
	minEntrySize = 1 + 1 + 1 + 8 + 8 + 8 + 4
	// maxZstdRatio bounds a zstd section's raw size by its stored size. A zstd block
	// covers at most 128 KiB and takes at least 4 bytes (a 3-byte header and one RLE
	// byte), so no frame expands more than 32768-fold; a larger recorded ratio is
	// corruption, and the bound keeps a damaged index from requesting huge allocations.
	maxZstdRatio = 1 << 15
)

// magic opens and closes every artifact. Like PNG's signature it has a high-bit byte, a
// CR LF pair, a DOS end-of-file byte and a lone LF, so transfers that mangle line endings
// or strip the eighth bit are detected as "not an artifact" rather than as corruption
// further in.
var magic = [8]byte{0x89, 'S', 'Q', 'Z', '\r', '\n', 0x1a, '\n'}

// castagnoli is the CRC-32C table; crc32 uses the SSE4.2 / ARMv8 CRC instructions for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Compression says how a section's bytes are stored.
type Compression uint8

// The compression methods. The values are the byte stored in the index.
const (
	// CompressionNone stores the raw bytes as they are.
	CompressionNone Compression = 0
	// CompressionZstd stores one zstd frame (RFC 8878) holding the raw bytes, with the
	// frame content size and the frame content checksum present.
	CompressionZstd Compression = 1
)

// String returns "none", "zstd", or "Compression(N)" for an unknown value.
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// SectionInfo describes one section, as recorded in the artifact's index.
type SectionInfo struct {
	// Name is the section's name, unique in the artifact.
	Name string
	// Offset is the file offset of the section's stored bytes, a multiple of Alignment.
	Offset int64
	// StoredSize is the number of bytes the section occupies in the file.
	StoredSize int64
	// RawSize is the number of bytes Reader.Section returns: StoredSize for uncompressed
	// sections, the decompressed size for compressed ones.
	RawSize int64
	// Compression says how the bytes are stored.
	Compression Compression
	// Checksum is the CRC-32C (Castagnoli) of the stored bytes.
	Checksum uint32
}

// checkName reports whether name is a valid section name: 1 to MaxNameLen bytes of ASCII
// letters, digits, '.', '_' and '-'.
func checkName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("section name must be 1 to %d bytes, got %d", MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("section name %q: byte %d (%q) is not a letter, digit, '.', '_' or '-'", name, i, c)
		}
	}
	return nil
}

// alignUp rounds off up to a multiple of Alignment. off is at most a file size, far from
// overflowing.
func alignUp(off uint64) uint64 { return (off + Alignment - 1) &^ (Alignment - 1) }

// appendHeader appends the 64-byte header of a file of the given version.
func appendHeader(dst []byte, version uint32) []byte {
	dst = append(dst, magic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, version)
	return append(dst, make([]byte, headerSize-12)...)
}

// appendIndex appends the index describing secs.
func appendIndex(dst []byte, secs []SectionInfo) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(secs)))
	for _, s := range secs {
		dst = append(dst, byte(len(s.Name)))
		dst = append(dst, s.Name...)
		dst = append(dst, byte(s.Compression))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(s.Offset))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(s.StoredSize))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(s.RawSize))
		dst = binary.LittleEndian.AppendUint32(dst, s.Checksum)
	}
	return dst
}

// appendTrailer appends the 32-byte trailer.
func appendTrailer(dst []byte, indexOff, indexLen uint64, indexCRC, version uint32) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, indexOff)
	dst = binary.LittleEndian.AppendUint64(dst, indexLen)
	dst = binary.LittleEndian.AppendUint32(dst, indexCRC)
	dst = binary.LittleEndian.AppendUint32(dst, version)
	return append(dst, magic[:]...)
}

// parseIndex decodes and checks the index idx, found at file offset indexOff. It checks
// everything the index alone can tell: the entry encoding, names (valid, unique),
// compression methods, sizes, and that the sections are laid out exactly as a writer lays
// them out: in index order, each at the first multiple of Alignment at or after the end of
// the previous one (the first at or after the header), the last ending where the index
// starts.
func parseIndex(idx []byte, indexOff uint64) ([]SectionInfo, error) {
	pos := 0
	where := func() int64 { return int64(indexOff) + int64(pos) }
	if len(idx) < 4 {
		return nil, corrupt("index", where(), "index is %d bytes, shorter than its entry count", len(idx))
	}
	count := binary.LittleEndian.Uint32(idx)
	pos = 4
	if uint64(count) > uint64(len(idx)-4)/minEntrySize {
		return nil, corrupt("index", where()-4, "%d entries cannot fit in %d bytes", count, len(idx))
	}
	secs := make([]SectionInfo, 0, count)
	seen := make(map[string]struct{}, count)
	cursor := uint64(headerSize)
	for i := range count {
		entry := where()
		nameLen := int(idx[pos])
		if len(idx)-pos < 1+nameLen+minEntrySize-2 {
			return nil, corrupt("index", entry, "entry %d is truncated", i)
		}
		name := string(idx[pos+1 : pos+1+nameLen])
		pos += 1 + nameLen
		if err := checkName(name); err != nil {
			return nil, corrupt("index", entry, "entry %d: %v", i, err)
		}
		if _, dup := seen[name]; dup {
			return nil, corrupt("index", entry, "entry %d: section name %q appears twice", i, name)
		}
		seen[name] = struct{}{}
		comp := Compression(idx[pos])
		off := binary.LittleEndian.Uint64(idx[pos+1:])
		stored := binary.LittleEndian.Uint64(idx[pos+9:])
		raw := binary.LittleEndian.Uint64(idx[pos+17:])
		sum := binary.LittleEndian.Uint32(idx[pos+25:])
		pos += 29
		bad := func(format string, args ...any) error {
			return corrupt("index", entry, "section %q: %s", name, fmt.Sprintf(format, args...))
		}
		if want := alignUp(cursor); off != want {
			return nil, bad("offset %d, want %d", off, want)
		}
		if off > indexOff || stored > indexOff-off {
			return nil, bad("%d bytes at offset %d run past the index at %d", stored, off, indexOff)
		}
		// stored is at most the file size, so stored*maxZstdRatio does not overflow.
		switch comp {
		case CompressionNone:
			if raw != stored {
				return nil, bad("uncompressed section records raw size %d and stored size %d", raw, stored)
			}
		case CompressionZstd:
			if stored == 0 || raw <= stored || raw > stored*maxZstdRatio || raw > math.MaxInt64 {
				return nil, bad("zstd section records impossible sizes: %d stored, %d raw", stored, raw)
			}
		default:
			return nil, bad("unknown compression %d", comp)
		}
		secs = append(secs, SectionInfo{
			Name: name, Offset: int64(off), StoredSize: int64(stored), RawSize: int64(raw),
			Compression: comp, Checksum: sum,
		})
		cursor = off + stored
	}
	if pos != len(idx) {
		return nil, corrupt("index", where(), "%d bytes after the last entry", len(idx)-pos)
	}
	if cursor != indexOff {
		return nil, corrupt("index", int64(indexOff), "sections end at %d but the index starts at %d", cursor, indexOff)
	}
	return secs, nil
}
