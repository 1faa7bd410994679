package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Writer builds a GGUF version 3 file: add metadata and tensors, then WriteTo. Metadata
// and tensors are written in the order they were added. The zero Writer is not ready for
// use; call NewWriter.
type Writer struct {
	kv        []KV
	keys      map[string]bool
	tensors   []writerTensor
	names     map[string]bool
	alignment int
}

type writerTensor struct {
	info TensorInfo
	data []byte
}

// NewWriter returns an empty Writer with alignment 32.
func NewWriter() *Writer {
	return &Writer{keys: map[string]bool{}, names: map[string]bool{}, alignment: DefaultAlignment}
}

// AddKV adds a metadata entry. value is converted by ValueOf: a sized Go integer, float,
// bool or string, a slice of one of them, or a Value. Setting general.alignment (an
// unsigned integer, a power of two) changes the alignment WriteTo uses; GGUF readers
// expect it as a uint32. Adding a key twice is an error.
func (w *Writer) AddKV(key string, value any) error {
	if w.keys[key] {
		return fmt.Errorf("gguf: metadata key %q added twice", key)
	}
	v, err := ValueOf(value)
	if err != nil {
		return fmt.Errorf("gguf: metadata key %q: %w", key, err)
	}
	if !v.Type.Valid() {
		return fmt.Errorf("gguf: metadata key %q: unknown value type %d", key, uint32(v.Type))
	}
	if key == KeyAlignment {
		a, ok := v.AsUint()
		if !ok || a == 0 || a > maxAlignment || a&(a-1) != 0 {
			return fmt.Errorf("gguf: %s = %v, want a power of two from 1 to %d", key, v, maxAlignment)
		}
		w.alignment = int(a)
	}
	w.keys[key] = true
	w.kv = append(w.kv, KV{Key: key, Value: v})
	return nil
}

// AddTensor adds a tensor of type t and shape dims (innermost first, at most MaxDims
// dims) whose encoded bytes are data. len(data) must be the size the type and shape
// imply. The Writer keeps data, not a copy, until WriteTo: do not change it before then.
func (w *Writer) AddTensor(name string, t Type, dims []uint64, data []byte) error {
	if w.names[name] {
		return fmt.Errorf("gguf: tensor %q added twice", name)
	}
	if !t.Known() {
		return fmt.Errorf("%w: tensor %q has type id %d", ErrUnknownType, name, uint32(t))
	}
	if len(dims) > MaxDims {
		return fmt.Errorf("gguf: tensor %q has %d dims, at most %d allowed", name, len(dims), MaxDims)
	}
	info := TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), Type: t}
	size, err := tensorSize(&info)
	if err != nil {
		return err
	}
	if uint64(len(data)) != size {
		return fmt.Errorf("gguf: tensor %q (%v, dims %v) has %d bytes of data, want %d", name, t, dims, len(data), size)
	}
	info.Size = int(size)
	w.names[name] = true
	w.tensors = append(w.tensors, writerTensor{info: info, data: data})
	return nil
}

// WriteTo writes the file to out and returns the number of bytes written.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	cw := &countWriter{w: out}
	b := bufio.NewWriterSize(cw, 1<<16)
	e := encoder{w: b}
	e.raw([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	align := uint64(w.alignment)
	var off uint64
	for i := range w.tensors {
		t := &w.tensors[i].info
		t.Offset = off
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(t.Offset)
		off = alignUp(off+uint64(t.Size), align)
	}
	if len(w.tensors) > 0 {
		e.pad(alignUp(uint64(e.n), align) - uint64(e.n))
	}
	for i, t := range w.tensors {
		if i > 0 {
			prev := w.tensors[i-1].info
			e.pad(t.info.Offset - prev.Offset - uint64(prev.Size))
		}
		e.raw(t.data)
	}
	if e.err == nil {
		e.err = b.Flush()
	}
	return cw.n, e.err
}

func alignUp(n, align uint64) uint64 { return (n + align - 1) &^ (align - 1) }

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// encoder writes little-endian GGUF fields, keeping the first error and the byte count.
type encoder struct {
	w   *bufio.Writer
	n   int
	err error
	buf [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(p)
	e.n += n
}

func (e *encoder) pad(n uint64) {
	var zero [64]byte
	for n > 0 {
		k := min(n, uint64(len(zero)))
		e.raw(zero[:k])
		n -= k
	}
}

func (e *encoder) u8(v uint8) { e.buf[0] = v; e.raw(e.buf[:1]) }

func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.raw(e.buf[:2]) }

func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.raw(e.buf[:4]) }

func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.raw(e.buf[:8]) }

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var n int
		n, e.err = e.w.WriteString(s)
		e.n += n
	}
}

// value writes v's encoding without its type id.
func (e *encoder) value(v Value) {
	switch v.Type.size() {
	case 1:
		e.u8(uint8(v.num))
		return
	case 2:
		e.u16(uint16(v.num))
		return
	case 4:
		e.u32(uint32(v.num))
		return
	case 8:
		e.u64(v.num)
		return
	}
	switch v.Type {
	case ValueString:
		e.str(v.str)
	case ValueArray:
		e.u32(uint32(v.Elem()))
		e.u64(uint64(v.Len()))
		if v.arr == nil {
			return
		}
		switch d := v.arr.data.(type) {
		case []uint8:
			e.raw(d)
		case []int8:
			for _, x := range d {
				e.u8(uint8(x))
			}
		case []bool:
			for _, x := range d {
				var b uint8
				if x {
					b = 1
				}
				e.u8(b)
			}
		case []uint16:
			for _, x := range d {
				e.u16(x)
			}
		case []int16:
			for _, x := range d {
				e.u16(uint16(x))
			}
		case []uint32:
			for _, x := range d {
				e.u32(x)
			}
		case []int32:
			for _, x := range d {
				e.u32(uint32(x))
			}
		case []float32:
			for _, x := range d {
				e.u32(math.Float32bits(x))
			}
		case []uint64:
			for _, x := range d {
				e.u64(x)
			}
		case []int64:
			for _, x := range d {
				e.u64(uint64(x))
			}
		case []float64:
			for _, x := range d {
				e.u64(math.Float64bits(x))
			}
		case []string:
			for _, x := range d {
				e.str(x)
			}
		case []Value:
			for _, x := range d {
				e.value(x)
			}
		}
	}
}
