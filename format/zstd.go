package format

import (
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// The encoder level is fixed so that identical inputs give identical files. EncodeAll runs
// on one goroutine whatever the encoder's concurrency, so its output does not depend on
// the machine; it can change with the zstd library version, which docs/FORMAT.md notes.
var zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(false),
	)
})

// zstdDecoder decodes with DecodeAll only, limited to the capacity of the destination,
// which is the section's recorded raw size.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecodeAllCapLimit(true),
	)
})

// compressPays reports whether a zstd encoding of stored bytes is worth keeping for raw
// bytes: it must save at least 1/16 of them. A compressed section costs a decompression and
// a heap copy when read, where an uncompressed one is used in place from the mapping, so a
// saving of a few percent is not worth it.
func compressPays(stored, raw int) bool { return stored < raw-raw/16 }

// compress returns src as one zstd frame, or nil when the encoder's frame would not be
// a valid section: the encoder leaves the frame content size out of frames for small
// inputs (under 256 bytes), and the format requires it, so such sections are stored raw.
func compress(src []byte) ([]byte, error) {
	enc, err := zstdEncoder()
	if err != nil {
		return nil, fmt.Errorf("format: zstd encoder: %w", err)
	}
	z := enc.EncodeAll(src, nil)
	var h zstd.Header
	if err := h.Decode(z); err != nil || !h.HasFCS {
		return nil, nil
	}
	return z, nil
}

// decompress decodes the zstd frame src, which must hold exactly rawSize bytes. It never
// allocates more than rawSize bytes for the output.
func decompress(src []byte, rawSize int64) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, fmt.Errorf("zstd frame header: %w", err)
	}
	if h.Skippable || !h.HasFCS || h.FrameContentSize != uint64(rawSize) || !h.HasCheckSum || h.DictionaryID != 0 {
		return nil, fmt.Errorf("zstd frame header (content size %d, want %d; checksum %t; dictionary %d) does not match the index",
			h.FrameContentSize, rawSize, h.HasCheckSum, h.DictionaryID)
	}
	if uint64(rawSize) > math.MaxInt {
		return nil, fmt.Errorf("section of %d bytes does not fit in memory", rawSize)
	}
	dec, err := zstdDecoder()
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	out, err := dec.DecodeAll(src, make([]byte, 0, rawSize))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if int64(len(out)) != rawSize {
		return nil, fmt.Errorf("zstd frame decodes to %d bytes, want %d", len(out), rawSize)
	}
	return out, nil
}
