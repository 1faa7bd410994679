package format

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// Encoder builds a section payload in the encoding docs/FORMAT.md specifies ("Payload
// encoding"): little-endian fixed-width numbers, canonical uvarints, length-prefixed
// strings and byte strings, and count-prefixed arrays whose elements are aligned to their
// size from the start of the payload. The zero Encoder is ready to use; Bytes returns the
// result. Decoder reads it back.
type Encoder struct {
	buf []byte
}

// NewEncoder returns an Encoder that appends to buf[:0], reusing its capacity.
func NewEncoder(buf []byte) *Encoder { return &Encoder{buf: buf[:0]} }

// Bytes returns the encoded payload. It aliases the Encoder's buffer until the next write.
func (e *Encoder) Bytes() []byte { return e.buf }

// Len returns the number of bytes encoded so far.
func (e *Encoder) Len() int { return len(e.buf) }

// Uvarint writes v as an unsigned LEB128 varint, 1 to 10 bytes (encoding/binary's format).
func (e *Encoder) Uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }

// Varint writes v zig-zag encoded as a uvarint (encoding/binary's format).
func (e *Encoder) Varint(v int64) { e.buf = binary.AppendVarint(e.buf, v) }

// Uint8 writes one byte.
func (e *Encoder) Uint8(v uint8) { e.buf = append(e.buf, v) }

// Bool writes one byte, 1 for true and 0 for false.
func (e *Encoder) Bool(v bool) {
	var b byte
	if v {
		b = 1
	}
	e.buf = append(e.buf, b)
}

// Uint16 writes v in 2 bytes.
func (e *Encoder) Uint16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }

// Uint32 writes v in 4 bytes.
func (e *Encoder) Uint32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }

// Uint64 writes v in 8 bytes.
func (e *Encoder) Uint64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

// Int32 writes v in 4 bytes, two's complement.
func (e *Encoder) Int32(v int32) { e.Uint32(uint32(v)) }

// Int64 writes v in 8 bytes, two's complement.
func (e *Encoder) Int64(v int64) { e.Uint64(uint64(v)) }

// Float32 writes the IEEE 754 bits of v in 4 bytes (NaN payloads preserved).
func (e *Encoder) Float32(v float32) { e.Uint32(math.Float32bits(v)) }

// Float64 writes the IEEE 754 bits of v in 8 bytes (NaN payloads preserved).
func (e *Encoder) Float64(v float64) { e.Uint64(math.Float64bits(v)) }

// Text writes s as a uvarint byte length followed by the bytes.
func (e *Encoder) Text(s string) {
	e.Uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Blob writes b as a uvarint byte length followed by the bytes.
func (e *Encoder) Blob(b []byte) { e.blob(b, 1) }

// blob writes b's uvarint byte length, zero padding to a multiple of align, then b.
func (e *Encoder) blob(b []byte, align int) {
	e.Uvarint(uint64(len(b)))
	e.Align(align)
	e.buf = append(e.buf, b...)
}

// Align writes zero bytes up to the next multiple of n from the start of the payload. n is
// a power of two from 1 to Alignment; Align panics otherwise, as that is a programming
// error. Since sections start at multiples of Alignment in the file, alignment in the
// payload is alignment in a mapping of the file.
func (e *Encoder) Align(n int) {
	if n <= 0 || n > Alignment || n&(n-1) != 0 {
		panic(fmt.Sprintf("format: Encoder.Align(%d): want a power of two from 1 to %d", n, Alignment))
	}
	for len(e.buf)%n != 0 {
		e.buf = append(e.buf, 0)
	}
}

// Uint16s writes a uvarint element count, zero padding to a multiple of 2, then the elements.
func (e *Encoder) Uint16s(v []uint16) { appendArray(e, v, 1) }

// LineUint16s writes a uvarint element count, zero padding to a multiple of Alignment,
// then the elements: an array whose elements start on a cache line of a mapping of the
// file (schema 3's rows).
func (e *Encoder) LineUint16s(v []uint16) { appendArray(e, v, Alignment) }

// LineBlob writes a uvarint byte length, zero padding to a multiple of Alignment, then the
// bytes (LineUint16s for bytes).
func (e *Encoder) LineBlob(b []byte) { e.blob(b, Alignment) }

// Int32s writes a uvarint element count, zero padding to a multiple of 4, then the elements.
func (e *Encoder) Int32s(v []int32) { appendArray(e, v, 1) }

// Uint32s writes a uvarint element count, zero padding to a multiple of 4, then the elements.
func (e *Encoder) Uint32s(v []uint32) { appendArray(e, v, 1) }

// Float32s writes a uvarint element count, zero padding to a multiple of 4, then the
// elements' IEEE 754 bits.
func (e *Encoder) Float32s(v []float32) { appendArray(e, v, 1) }

// Int64s writes a uvarint element count, zero padding to a multiple of 8, then the elements.
func (e *Encoder) Int64s(v []int64) { appendArray(e, v, 1) }

// Uint64s writes a uvarint element count, zero padding to a multiple of 8, then the elements.
func (e *Encoder) Uint64s(v []uint64) { appendArray(e, v, 1) }

// Float64s writes a uvarint element count, zero padding to a multiple of 8, then the
// elements' IEEE 754 bits.
func (e *Encoder) Float64s(v []float64) { appendArray(e, v, 1) }

// element is a fixed-size number type that arrays hold.
type element interface {
	uint16 | int32 | uint32 | float32 | int64 | uint64 | float64
}

// nativeLittleEndian is true on little-endian machines, where an array's bytes in the file
// are its bytes in memory.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// asBytes views v's memory as bytes.
func asBytes[T element](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0])))
}

// swapElements reverses the bytes of each size-byte element of b in place.
func swapElements(b []byte, size int) {
	for i := 0; i+size <= len(b); i += size {
		for j, k := i, i+size-1; j < k; j, k = j+1, k-1 {
			b[j], b[k] = b[k], b[j]
		}
	}
}

// appendArray writes v's uvarint element count, zero padding to a multiple of the element
// size or of align if larger, then the elements.
func appendArray[T element](e *Encoder, v []T, align int) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	e.Uvarint(uint64(len(v)))
	e.Align(max(size, align))
	start := len(e.buf)
	e.buf = append(e.buf, asBytes(v)...)
	if !nativeLittleEndian {
		swapElements(e.buf[start:], size)
	}
}

// Decoder reads a payload written by Encoder. Reads are sticky-error: after the first
// failure (a read past the end, a non-canonical uvarint, a bool that is not 0 or 1, a
// non-zero padding byte) every later read returns a zero value and Err returns that first
// error, which wraps ErrCorrupt and gives the section name and the payload offset of the
// failed read. A failed read consumes nothing. Array and Blob reads check their length
// against the bytes that remain before allocating anything.
//
// Array reads (Uint16s, Float32s, ...) return views of the payload without copying when
// the machine is little-endian and the elements are aligned in memory (always the case in
// a mapped uncompressed section, since the file aligns sections and Encoder aligns arrays,
// and in practice for decompressed sections, whose buffers Go aligns); otherwise they
// copy. Either way treat the result as read-only: a view of a mapped file faults when
// written. Use slices.Clone for a private copy.
type Decoder struct {
	name string
	data []byte
	off  int
	err  error
}

// NewDecoder returns a Decoder over data, the raw bytes of the section called name (used
// in error messages).
func NewDecoder(name string, data []byte) *Decoder { return &Decoder{name: name, data: data} }

// Err returns the first read error, or nil.
func (d *Decoder) Err() error { return d.err }

// Offset returns the number of bytes consumed.
func (d *Decoder) Offset() int { return d.off }

// Remaining returns the number of bytes not yet consumed.
func (d *Decoder) Remaining() int { return len(d.data) - d.off }

// Finish returns the first read error, or an ErrCorrupt error if bytes remain unread: a
// payload that is longer than its schema says is as damaged as a shorter one.
func (d *Decoder) Finish() error {
	if d.err == nil && d.off != len(d.data) {
		d.fail(d.off, "%d unread bytes at the end", len(d.data)-d.off)
	}
	return d.err
}

// fail records the first error.
func (d *Decoder) fail(off int, format string, args ...any) {
	if d.err == nil {
		d.err = corrupt(fmt.Sprintf("section %q data", d.name), int64(off), format, args...)
	}
}

// take consumes n bytes, or fails naming what was being read.
func (d *Decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.data)-d.off {
		d.fail(d.off, "reading %s: need %d bytes, %d remain", what, n, len(d.data)-d.off)
		return nil
	}
	b := d.data[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

// Uvarint reads a uvarint. Overlong encodings (a final zero byte after the first) and
// values over 64 bits are corrupt.
func (d *Decoder) Uvarint() uint64 {
	v, _ := d.uvarint("uvarint")
	return v
}

// uvarint reads a uvarint and returns its length in bytes (0 on failure).
func (d *Decoder) uvarint(what string) (uint64, int) {
	if d.err != nil {
		return 0, 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		d.fail(d.off, "reading %s: the data ends inside a uvarint", what)
		return 0, 0
	case n < 0:
		d.fail(d.off, "reading %s: uvarint overflows 64 bits", what)
		return 0, 0
	case n > 1 && d.data[d.off+n-1] == 0:
		d.fail(d.off, "reading %s: overlong uvarint", what)
		return 0, 0
	}
	d.off += n
	return v, n
}

// Varint reads a zig-zag varint.
func (d *Decoder) Varint() int64 {
	u := d.Uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// Uint8 reads one byte.
func (d *Decoder) Uint8() uint8 {
	if b := d.take(1, "uint8"); b != nil {
		return b[0]
	}
	return 0
}

// Bool reads one byte, which must be 0 or 1.
func (d *Decoder) Bool() bool {
	b := d.take(1, "bool")
	if b == nil {
		return false
	}
	if b[0] > 1 {
		d.off--
		d.fail(d.off, "bool byte is %d, want 0 or 1", b[0])
		return false
	}
	return b[0] == 1
}

// Uint16 reads 2 bytes.
func (d *Decoder) Uint16() uint16 {
	if b := d.take(2, "uint16"); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// Uint32 reads 4 bytes.
func (d *Decoder) Uint32() uint32 {
	if b := d.take(4, "uint32"); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// Uint64 reads 8 bytes.
func (d *Decoder) Uint64() uint64 {
	if b := d.take(8, "uint64"); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Int32 reads 4 bytes, two's complement.
func (d *Decoder) Int32() int32 { return int32(d.Uint32()) }

// Int64 reads 8 bytes, two's complement.
func (d *Decoder) Int64() int64 { return int64(d.Uint64()) }

// Float32 reads 4 bytes of IEEE 754 bits.
func (d *Decoder) Float32() float32 { return math.Float32frombits(d.Uint32()) }

// Float64 reads 8 bytes of IEEE 754 bits.
func (d *Decoder) Float64() float64 { return math.Float64frombits(d.Uint64()) }

// lengthPrefixed reads a uvarint length and that many bytes, consuming nothing on failure.
func (d *Decoder) lengthPrefixed(what string, align int) []byte {
	start := d.off
	n, _ := d.uvarint(what + " length")
	if d.err == nil && align > 1 {
		d.skipPadding(align, what+" padding")
	}
	if d.err != nil {
		d.off = start
		return nil
	}
	if remain := len(d.data) - d.off; n > uint64(remain) {
		d.off = start
		d.fail(start, "reading %s: length %d, but %d bytes remain", what, n, remain)
		return nil
	}
	return d.take(int(n), what)
}

// Text reads a length-prefixed string. The string is a copy: it outlives the Reader.
func (d *Decoder) Text() string { return string(d.lengthPrefixed("string", 1)) }

// Blob reads length-prefixed bytes. The result is a read-only view of the payload (nil for
// length 0 or on error), valid as long as the section's bytes.
func (d *Decoder) Blob() []byte { return d.blob("bytes", 1) }

// LineBlob reads bytes written by Encoder.LineBlob, as Blob does.
func (d *Decoder) LineBlob() []byte { return d.blob("line-aligned bytes", Alignment) }

// blob reads length-prefixed bytes padded to align: nil for length 0 or on error.
func (d *Decoder) blob(what string, align int) []byte {
	b := d.lengthPrefixed(what, align)
	if len(b) == 0 {
		return nil
	}
	return b
}

// Align skips zero padding up to the next multiple of n from the start of the payload, as
// Encoder.Align wrote it. n must be a power of two from 1 to Alignment.
func (d *Decoder) Align(n int) {
	if d.err != nil {
		return
	}
	if n <= 0 || n > Alignment || n&(n-1) != 0 {
		d.fail(d.off, "alignment %d is not a power of two from 1 to %d", n, Alignment)
		return
	}
	d.skipPadding(n, "padding")
}

// skipPadding consumes zero bytes up to a multiple of n, consuming nothing on failure.
func (d *Decoder) skipPadding(n int, what string) {
	pad := (n - d.off%n) % n
	if pad > len(d.data)-d.off {
		d.fail(d.off, "reading %s: need %d bytes, %d remain", what, pad, len(d.data)-d.off)
		return
	}
	if i := firstNonZero(d.data[d.off : d.off+pad]); i >= 0 {
		d.fail(d.off+i, "%s byte is not zero", what)
		return
	}
	d.off += pad
}

// Uint16s reads an array written by Encoder.Uint16s.
func (d *Decoder) Uint16s() []uint16 { return decodeArray[uint16](d, "uint16 array", 1) }

// LineUint16s reads an array written by Encoder.LineUint16s.
func (d *Decoder) LineUint16s() []uint16 {
	return decodeArray[uint16](d, "line-aligned uint16 array", Alignment)
}

// Int32s reads an array written by Encoder.Int32s.
func (d *Decoder) Int32s() []int32 { return decodeArray[int32](d, "int32 array", 1) }

// Uint32s reads an array written by Encoder.Uint32s.
func (d *Decoder) Uint32s() []uint32 { return decodeArray[uint32](d, "uint32 array", 1) }

// Float32s reads an array written by Encoder.Float32s.
func (d *Decoder) Float32s() []float32 { return decodeArray[float32](d, "float32 array", 1) }

// Int64s reads an array written by Encoder.Int64s.
func (d *Decoder) Int64s() []int64 { return decodeArray[int64](d, "int64 array", 1) }

// Uint64s reads an array written by Encoder.Uint64s.
func (d *Decoder) Uint64s() []uint64 { return decodeArray[uint64](d, "uint64 array", 1) }

// Float64s reads an array written by Encoder.Float64s.
func (d *Decoder) Float64s() []float64 { return decodeArray[float64](d, "float64 array", 1) }

// decodeArray reads a count-prefixed array padded to its element size, or to align if
// larger (see Decoder). An empty array is nil.
func decodeArray[T element](d *Decoder, what string, align int) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	start := d.off
	count, _ := d.uvarint(what + " count")
	if d.err == nil {
		d.skipPadding(max(size, align), what+" padding")
	}
	if d.err != nil {
		d.off = start
		return nil
	}
	if count > uint64(len(d.data)-d.off)/uint64(size) {
		remain := len(d.data) - d.off
		d.off = start
		d.fail(start, "reading %s: %d elements of %d bytes, but %d bytes remain", what, count, size, remain)
		return nil
	}
	b := d.take(int(count)*size, what)
	if count == 0 {
		return nil
	}
	p := unsafe.Pointer(&b[0])
	if nativeLittleEndian && uintptr(p)%uintptr(size) == 0 {
		return unsafe.Slice((*T)(p), int(count))
	}
	out := make([]T, count)
	copy(asBytes(out), b)
	if !nativeLittleEndian {
		swapElements(asBytes(out), size)
	}
	return out
}
