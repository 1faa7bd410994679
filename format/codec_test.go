package format

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestEncoderGolden(t *testing.T) {
	tests := []struct {
		name string
		enc  func(*Encoder)
		want []byte
	}{
		{"uvarint 0", func(e *Encoder) { e.Uvarint(0) }, []byte{0}},
		{"uvarint 300", func(e *Encoder) { e.Uvarint(300) }, []byte{0xac, 0x02}},
		{"uvarint max", func(e *Encoder) { e.Uvarint(math.MaxUint64) }, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"varint -1", func(e *Encoder) { e.Varint(-1) }, []byte{0x01}},
		{"varint 1", func(e *Encoder) { e.Varint(1) }, []byte{0x02}},
		{"bool", func(e *Encoder) { e.Bool(true); e.Bool(false) }, []byte{1, 0}},
		{"uint16", func(e *Encoder) { e.Uint16(0x0102) }, []byte{2, 1}},
		{"uint32", func(e *Encoder) { e.Uint32(0x01020304) }, []byte{4, 3, 2, 1}},
		{"int64", func(e *Encoder) { e.Int64(-2) }, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"float32", func(e *Encoder) { e.Float32(1) }, []byte{0, 0, 0x80, 0x3f}},
		{"float64", func(e *Encoder) { e.Float64(-2) }, []byte{0, 0, 0, 0, 0, 0, 0, 0xc0}},
		{"text", func(e *Encoder) { e.Text("go") }, []byte{2, 'g', 'o'}},
		{"blob empty", func(e *Encoder) { e.Blob(nil) }, []byte{0}},
		{"uint16s", func(e *Encoder) { e.Uint16s([]uint16{1, 0x0203}) }, []byte{2, 0, 1, 0, 3, 2}},
		{"int32s padded", func(e *Encoder) { e.Int32s([]int32{-1}) }, []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		{"float32s after a byte", func(e *Encoder) { e.Uint8(9); e.Float32s([]float32{2}) }, []byte{9, 1, 0, 0, 0, 0, 0, 0x40}},
		{"uint64s", func(e *Encoder) { e.Uint64s([]uint64{5}) }, []byte{1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0}},
		{"empty array", func(e *Encoder) { e.Uint8(1); e.Float64s(nil) }, []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{"align", func(e *Encoder) { e.Uint8(7); e.Align(4) }, []byte{7, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Encoder
			tt.enc(&e)
			if !bytes.Equal(e.Bytes(), tt.want) {
				t.Errorf("got % x, want % x", e.Bytes(), tt.want)
			}
			if e.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", e.Len(), len(tt.want))
			}
		})
	}
}

func TestCodecRoundTrip(t *testing.T) {
	u16 := []uint16{0, 1, 0x3c00, 0xffff}
	i32 := []int32{math.MinInt32, -1, 0, 7, math.MaxInt32}
	u32 := []uint32{3, 0xdeadbeef}
	f32 := []float32{0, -1.5, float32(math.Inf(1)), math.Float32frombits(0x7fc00001)}
	i64 := []int64{math.MinInt64, 42}
	u64 := []uint64{math.MaxUint64}
	f64 := []float64{math.Pi, math.Float64frombits(0x7ff8000000000123)}
	var e Encoder
	e.Uint8(1)
	e.Uvarint(1 << 40)
	e.Varint(-12345)
	e.Bool(true)
	e.Uint16(65535)
	e.Uint32(1 << 31)
	e.Uint64(1 << 63)
	e.Int32(-7)
	e.Int64(-8)
	e.Float32(0.25)
	e.Float64(-0.125)
	e.Text("héllo")
	e.Blob([]byte{0, 1, 2})
	e.Uint16s(u16)
	e.Int32s(i32)
	e.Uint32s(u32)
	e.Float32s(f32)
	e.Int64s(i64)
	e.Uint64s(u64)
	e.Float64s(f64)
	e.Align(64)
	e.Text("")

	d := NewDecoder("test", e.Bytes())
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("Uint8", d.Uint8(), uint8(1))
	check("Uvarint", d.Uvarint(), uint64(1<<40))
	check("Varint", d.Varint(), int64(-12345))
	check("Bool", d.Bool(), true)
	check("Uint16", d.Uint16(), uint16(65535))
	check("Uint32", d.Uint32(), uint32(1<<31))
	check("Uint64", d.Uint64(), uint64(1<<63))
	check("Int32", d.Int32(), int32(-7))
	check("Int64", d.Int64(), int64(-8))
	check("Float32", d.Float32(), float32(0.25))
	check("Float64", d.Float64(), -0.125)
	check("Text", d.Text(), "héllo")
	check("Blob", string(d.Blob()), "\x00\x01\x02")
	sameBits := func(name string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, want % x", name, got, want)
		}
	}
	sameBits("Uint16s", asBytes(d.Uint16s()), asBytes(u16))
	sameBits("Int32s", asBytes(d.Int32s()), asBytes(i32))
	sameBits("Uint32s", asBytes(d.Uint32s()), asBytes(u32))
	sameBits("Float32s", asBytes(d.Float32s()), asBytes(f32))
	sameBits("Int64s", asBytes(d.Int64s()), asBytes(i64))
	sameBits("Uint64s", asBytes(d.Uint64s()), asBytes(u64))
	sameBits("Float64s", asBytes(d.Float64s()), asBytes(f64))
	d.Align(64)
	check("Text", d.Text(), "")
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestDecoderErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		read func(*Decoder)
		off  int64 // offset the error reports
		want string
	}{
		{"uint32 truncated", []byte{1, 2, 3}, func(d *Decoder) { d.Uint32() }, 0, "need 4 bytes, 3 remain"},
		{"uint64 after a byte", []byte{1, 2}, func(d *Decoder) { d.Uint8(); d.Uint64() }, 1, "need 8 bytes, 1 remain"},
		{"empty uvarint", nil, func(d *Decoder) { d.Uvarint() }, 0, "ends inside a uvarint"},
		{"unterminated uvarint", []byte{0x80, 0x80}, func(d *Decoder) { d.Uvarint() }, 0, "ends inside a uvarint"},
		{"overlong uvarint", []byte{0x81, 0x00}, func(d *Decoder) { d.Uvarint() }, 0, "overlong uvarint"},
		{"uvarint overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, func(d *Decoder) { d.Uvarint() }, 0, "overflows 64 bits"},
		{"bool 2", []byte{0, 2}, func(d *Decoder) { d.Bool(); d.Bool() }, 1, "bool byte is 2"},
		{"text too long", []byte{5, 'a'}, func(d *Decoder) { d.Text() }, 0, "length 5, but 1 bytes remain"},
		{"blob huge", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, func(d *Decoder) { d.Blob() }, 0, "but 0 bytes remain"},
		{"array count huge", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0}, func(d *Decoder) { d.Float32s() }, 0, "4294967295 elements of 4 bytes, but 0 bytes remain"},
		{"array short", []byte{2, 0, 0, 0, 1, 2, 3, 4}, func(d *Decoder) { d.Int32s() }, 0, "2 elements of 4 bytes, but 4 bytes remain"},
		{"array padding not zero", []byte{1, 0, 9, 0, 1, 2, 3, 4}, func(d *Decoder) { d.Uint32s() }, 2, "padding byte is not zero"},
		{"array padding truncated", []byte{1, 0}, func(d *Decoder) { d.Uint64s() }, 1, "need 7 bytes, 1 remain"},
		{"align not zero", []byte{1, 0, 1, 0}, func(d *Decoder) { d.Uint8(); d.Align(4) }, 2, "padding byte is not zero"},
		{"align bad n", []byte{1}, func(d *Decoder) { d.Align(3) }, 0, "alignment 3"},
		{"trailing bytes", []byte{1, 2}, func(d *Decoder) { d.Uint8() }, 1, "1 unread bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder("hdr", tt.data)
			tt.read(d)
			err := d.Finish()
			var fe *Error
			if !errors.As(err, &fe) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want an *Error wrapping ErrCorrupt", err)
			}
			if fe.Offset != tt.off || fe.Where != `section "hdr" data` || !strings.Contains(fe.Reason, tt.want) {
				t.Errorf("got %q (offset %d), want offset %d and a reason containing %q", err, fe.Offset, tt.off, tt.want)
			}
			// The error is sticky and later reads return zero values.
			if d.Uint8() != 0 || d.Text() != "" || d.Float32s() != nil || d.Err() != err {
				t.Error("reads after an error are not inert")
			}
		})
	}
}

func TestDecoderZeroCopy(t *testing.T) {
	vals := []float32{1, 2, 3, 4, 5}
	var e Encoder
	e.Text("k")
	e.Float32s(vals)
	payload := e.Bytes()
	path := filepath.Join(t.TempDir(), "a.sqz")
	writeArtifact(t, path, []testSection{{name: "pad", data: []byte{1}}, {name: "keys", data: payload}})
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := r.Decoder("keys")
	if err != nil {
		t.Fatal(err)
	}
	d.Text()
	got := d.Float32s()
	if err := d.Finish(); err != nil || !slices.Equal(got, vals) {
		t.Fatalf("got %v, %v", got, err)
	}
	raw, _ := r.Section("keys")
	start, end := uintptr(unsafe.Pointer(&raw[0])), uintptr(unsafe.Pointer(&raw[0]))+uintptr(len(raw))
	if p := uintptr(unsafe.Pointer(&got[0])); nativeLittleEndian && (p < start || p >= end) {
		t.Error("an aligned array in a mapped section was copied, want a view")
	}
	// The same payload at an odd address decodes to a copy with the same values.
	odd := append(make([]byte, 1, len(payload)+1), payload...)[1:]
	d = NewDecoder("keys", odd)
	d.Text()
	if got := d.Float32s(); d.Finish() != nil || !slices.Equal(got, vals) {
		t.Errorf("misaligned payload decodes to %v, %v", got, d.Err())
	}
}

// TestLineArrays checks that LineUint16s and LineBlob put their elements on a multiple of
// Alignment of the payload (whatever came before), read back, and that their padding
// must be zero.
func TestLineArrays(t *testing.T) {
	vals := []uint16{1, 2, 3, 65535}
	blob := []byte("codes")
	for lead := range 70 {
		var e Encoder
		for range lead {
			e.Uint8(7)
		}
		e.LineUint16s(vals)
		e.LineBlob(blob)
		e.LineUint16s(nil)
		payload := e.Bytes()
		d := NewDecoder("rows", payload)
		for range lead {
			d.Uint8()
		}
		got, b, none := d.LineUint16s(), d.LineBlob(), d.LineUint16s()
		if err := d.Finish(); err != nil || !slices.Equal(got, vals) || !bytes.Equal(b, blob) || none != nil {
			t.Fatalf("lead %d: got %v, %q, %v, %v", lead, got, b, none, err)
		}
		base := uintptr(unsafe.Pointer(&payload[0]))
		if at := uintptr(unsafe.Pointer(&b[0])) - base; at%Alignment != 0 {
			t.Fatalf("lead %d: blob at payload offset %d", lead, at)
		}
		if nativeLittleEndian {
			if at := uintptr(unsafe.Pointer(&got[0])) - base; at%Alignment != 0 {
				t.Fatalf("lead %d: array at payload offset %d", lead, at)
			}
		}
		// A non-zero padding byte (there is padding after the count unless the count
		// ends on a line) is corrupt.
		if (lead+1)%Alignment != 0 {
			bad := bytes.Clone(payload)
			bad[lead+1] = 1
			d := NewDecoder("rows", bad)
			for range lead {
				d.Uint8()
			}
			if d.LineUint16s(); !errors.Is(d.Err(), ErrCorrupt) {
				t.Fatalf("lead %d: non-zero padding read: %v", lead, d.Err())
			}
		}
	}
}

func TestEncoderAlignPanics(t *testing.T) {
	for _, n := range []int{0, -1, 3, 128} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Align(%d) did not panic", n)
				}
			}()
			var e Encoder
			e.Align(n)
		}()
	}
}
