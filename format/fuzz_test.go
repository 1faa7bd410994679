package format

import (
	"bytes"
	"testing"
)

// fuzzSeeds are small valid artifacts and a few damaged ones.
func fuzzSeeds(f *testing.F) [][]byte {
	small := artifactBytes(f, smallSections())
	seeds := [][]byte{
		small,
		artifactBytes(f, nil),
		artifactBytes(f, []testSection{{name: "z", data: textBytes(2000), compress: true}}),
		artifactBytes(f, []testSection{{name: "a", data: []byte("x")}, {name: "b", data: nil}}),
		small[:len(small)-1],
		small[:70],
		{},
		[]byte("GGUF"),
	}
	return seeds
}

// checkReader exercises every read path of r and fails on errors that wrap no sentinel.
func checkReader(t *testing.T, r *Reader) {
	for _, s := range r.Sections() {
		data, err := r.Section(s.Name)
		if err != nil {
			if !isFileError(err) {
				t.Fatalf("Section(%q): %v wraps no sentinel", s.Name, err)
			}
		} else if int64(len(data)) != s.RawSize {
			t.Fatalf("Section(%q) returned %d bytes, index says %d", s.Name, len(data), s.RawSize)
		}
		// The zstd frame behind a checksum the fuzzer cannot match: decode it anyway.
		if s.Compression == CompressionZstd {
			out, err := decompress(r.data[s.Offset:s.Offset+s.StoredSize], s.RawSize)
			if err == nil && int64(len(out)) != s.RawSize {
				t.Fatalf("decompress returned %d bytes, want %d", len(out), s.RawSize)
			}
		}
	}
	if err := r.Verify(); err != nil && !isFileError(err) {
		t.Fatalf("Verify: %v wraps no sentinel", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			if !isFileError(err) {
				t.Fatalf("Parse: %v wraps no sentinel", err)
			}
			return
		}
		checkReader(t, r)
	})
}

// FuzzIndex fuzzes an index and the bytes before it, building the rest of the file with
// a valid index checksum, so that mutations reach the index parser instead of stopping at
// the checksum.
func FuzzIndex(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		r, err := Parse(s)
		if err != nil {
			continue
		}
		secs := r.Sections()
		end := int64(headerSize)
		if len(secs) > 0 {
			end = secs[len(secs)-1].Offset + secs[len(secs)-1].StoredSize
		}
		f.Add(appendIndex(nil, secs), s[headerSize:end])
	}
	f.Fuzz(func(t *testing.T, index, body []byte) {
		b := appendHeader(nil, Version)
		b = append(b, body...)
		off := uint64(len(b))
		b = append(b, index...)
		b = appendTrailer(b, off, uint64(len(index)), checksum(index), Version)
		r, err := Parse(b)
		if err != nil {
			if !isFileError(err) {
				t.Fatalf("Parse: %v wraps no sentinel", err)
			}
			return
		}
		checkReader(t, r)
	})
}

// FuzzDecoder runs a sequence of reads (chosen by ops) over payload. Reads never panic, and
// the bytes the successful reads consumed re-encode to exactly themselves: the encoding is
// canonical.
func FuzzDecoder(f *testing.F) {
	var e Encoder
	e.Uvarint(300)
	e.Text("tokens")
	e.Float32s([]float32{1, 2})
	e.Bool(true)
	e.Uint16s([]uint16{7})
	e.Int64(-1)
	f.Add([]byte{0, 11, 16, 1, 13, 6}, e.Bytes())
	f.Add([]byte{2, 3, 4, 5, 7, 8, 9, 10, 12, 14, 15, 17, 18, 19}, bytes.Repeat([]byte{1}, 64))
	f.Add([]byte{20, 20}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 21, 22}, append(append([]byte{5, 1}, make([]byte, 62)...), 9, 0, 1))
	f.Fuzz(func(t *testing.T, ops, payload []byte) {
		d := NewDecoder("fuzz", payload)
		var e Encoder
		for _, op := range ops {
			switch op % 23 {
			case 0:
				if v := d.Uvarint(); d.Err() == nil {
					e.Uvarint(v)
				}
			case 1:
				if v := d.Varint(); d.Err() == nil {
					e.Varint(v)
				}
			case 2:
				if v := d.Uint8(); d.Err() == nil {
					e.Uint8(v)
				}
			case 3:
				if v := d.Bool(); d.Err() == nil {
					e.Bool(v)
				}
			case 4:
				if v := d.Uint16(); d.Err() == nil {
					e.Uint16(v)
				}
			case 5:
				if v := d.Uint32(); d.Err() == nil {
					e.Uint32(v)
				}
			case 6:
				if v := d.Uint64(); d.Err() == nil {
					e.Uint64(v)
				}
			case 7:
				if v := d.Int32(); d.Err() == nil {
					e.Int32(v)
				}
			case 8:
				if v := d.Int64(); d.Err() == nil {
					e.Int64(v)
				}
			case 9:
				if v := d.Float32(); d.Err() == nil {
					e.Float32(v)
				}
			case 10:
				if v := d.Float64(); d.Err() == nil {
					e.Float64(v)
				}
			case 11:
				if v := d.Text(); d.Err() == nil {
					e.Text(v)
				}
			case 12:
				if v := d.Blob(); d.Err() == nil {
					e.Blob(v)
				}
			case 13:
				if v := d.Uint16s(); d.Err() == nil {
					e.Uint16s(v)
				}
			case 14:
				if v := d.Int32s(); d.Err() == nil {
					e.Int32s(v)
				}
			case 15:
				if v := d.Uint32s(); d.Err() == nil {
					e.Uint32s(v)
				}
			case 16:
				if v := d.Float32s(); d.Err() == nil {
					e.Float32s(v)
				}
			case 17:
				if v := d.Int64s(); d.Err() == nil {
					e.Int64s(v)
				}
			case 18:
				if v := d.Uint64s(); d.Err() == nil {
					e.Uint64s(v)
				}
			case 19:
				if v := d.Float64s(); d.Err() == nil {
					e.Float64s(v)
				}
			case 20:
				n := 1 << (op / 23 % 7)
				if d.Align(n); d.Err() == nil {
					e.Align(n)
				}
			case 21:
				if v := d.LineUint16s(); d.Err() == nil {
					e.LineUint16s(v)
				}
			case 22:
				if v := d.LineBlob(); d.Err() == nil {
					e.LineBlob(v)
				}
			}
		}
		if err := d.Err(); err != nil && !isFileError(err) {
			t.Fatalf("%v wraps no sentinel", err)
		}
		if d.Offset() < 0 || d.Offset() > len(payload) {
			t.Fatalf("offset %d outside the %d-byte payload", d.Offset(), len(payload))
		}
		if !bytes.Equal(e.Bytes(), payload[:d.Offset()]) {
			t.Fatalf("consumed % x, re-encoded % x", payload[:d.Offset()], e.Bytes())
		}
		readErr := d.Err()
		if err := d.Finish(); (err == nil) != (readErr == nil && d.Offset() == len(payload)) {
			t.Fatalf("Finish() = %v at offset %d of %d", err, d.Offset(), len(payload))
		}
	})
}
