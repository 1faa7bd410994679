package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// Layout constants of the GGUF header.
const (
	// Magic is the first four bytes of every GGUF file.
	Magic = "GGUF"
	// DefaultAlignment is the alignment of the data section and of tensor offsets when a
	// file has no general.alignment key.
	DefaultAlignment = 32
	// MaxDims is the most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
	MaxDims = 4
	// KeyAlignment is the metadata key that overrides DefaultAlignment.
	KeyAlignment = "general.alignment"
	// KeyArchitecture is the metadata key naming the model architecture.
	KeyArchitecture = "general.architecture"

	// maxAlignment bounds general.alignment, so aligning an offset cannot overflow.
	maxAlignment = 1 << 30
	// maxNesting bounds how deeply arrays may nest, so a hostile file cannot exhaust the
	// stack.
	maxNesting = 8
	// minKVSize and minTensorInfoSize are the fewest bytes a key-value pair (empty key,
	// one-byte value) and a tensor info (empty name, no dims) take; they bound the counts in
	// the header before anything is allocated.
	minKVSize         = 8 + 4 + 1
	minTensorInfoSize = 8 + 4 + 4 + 8
)

// decoder reads little-endian GGUF fields from b. Errors name the byte offset and the
// entry being read; messages are only formatted on error, so parsing a valid file does not
// allocate per field.
type decoder struct {
	b   []byte
	off int

	// The entry being read, for error messages: "metadata entry 3" until its key is
	// known, then "metadata key \"k\"" (likewise "tensor info 3", "tensor \"w\"").
	kind, kindNamed string
	index           int
	name            string
	named           bool
}

// enter records that entry i of a kind is being read.
func (d *decoder) enter(kind, kindNamed string, i int) {
	d.kind, d.kindNamed, d.index, d.name, d.named = kind, kindNamed, i, "", false
}

// errorf returns an error wrapping sentinel, prefixed with the entry being read.
func (d *decoder) errorf(sentinel error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	switch {
	case d.named:
		return fmt.Errorf("%w: %s %q: %s", sentinel, d.kindNamed, d.name, msg)
	case d.kind != "":
		return fmt.Errorf("%w: %s %d: %s", sentinel, d.kind, d.index, msg)
	}
	return fmt.Errorf("%w: %s", sentinel, msg)
}

func (d *decoder) left() int { return len(d.b) - d.off }

// need fails with ErrTruncated unless n more bytes remain for the field what.
func (d *decoder) need(n int, what string) error {
	if n > d.left() {
		return d.errorf(ErrTruncated, "%s at byte %d needs %d bytes, %d left", what, d.off, n, d.left())
	}
	return nil
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) u64(what string) (uint64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v, nil
}

// count reads a 64-bit count (the field what) and checks that that many items of at least
// size bytes each fit in what is left of the file.
func (d *decoder) count(size int, what string) (int, error) {
	at := d.off
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	if n > uint64(d.left()/size) {
		return 0, d.errorf(ErrTruncated, "%s %d at byte %d: items of at least %d bytes each do not fit in the %d bytes left", what, n, at, size, d.left())
	}
	return int(n), nil
}

// str reads a string: a 64-bit length and that many bytes. The bytes are copied, so the
// string outlives the mapping.
func (d *decoder) str(what string) (string, error) {
	at := d.off
	if err := d.need(8, what); err != nil {
		return "", err
	}
	n := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	if n > uint64(d.left()) {
		return "", d.errorf(ErrTruncated, "%s of %d bytes at byte %d, %d bytes left", what, n, at, d.left())
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s, nil
}

// value reads a value of type t; depth counts the arrays it is nested in.
func (d *decoder) value(t ValueType, depth int) (Value, error) {
	if sz := t.size(); sz > 0 {
		if err := d.need(sz, "value"); err != nil {
			return Value{}, err
		}
		var n uint64
		p := d.b[d.off:]
		switch t {
		case ValueUint8, ValueBool:
			n = uint64(p[0])
		case ValueInt8:
			n = uint64(int64(int8(p[0])))
		case ValueUint16:
			n = uint64(binary.LittleEndian.Uint16(p))
		case ValueInt16:
			n = uint64(int64(int16(binary.LittleEndian.Uint16(p))))
		case ValueUint32, ValueFloat32:
			n = uint64(binary.LittleEndian.Uint32(p))
		case ValueInt32:
			n = uint64(int64(int32(binary.LittleEndian.Uint32(p))))
		default: // 64-bit types
			n = binary.LittleEndian.Uint64(p)
		}
		if t == ValueBool && n > 1 {
			return Value{}, d.errorf(ErrCorrupt, "bool at byte %d has value %d", d.off, n)
		}
		d.off += sz
		return Value{Type: t, num: n}, nil
	}
	switch t {
	case ValueString:
		s, err := d.str("string")
		return Value{Type: ValueString, str: s}, err
	case ValueArray:
		return d.array(depth + 1)
	}
	return Value{}, d.errorf(ErrCorrupt, "unknown value type %d", uint32(t))
}

// array reads an array's element type, count and elements; depth counts the arrays it
// is nested in, itself included.
func (d *decoder) array(depth int) (Value, error) {
	if depth > maxNesting {
		return Value{}, d.errorf(ErrCorrupt, "array at byte %d nests arrays more than %d deep", d.off, maxNesting)
	}
	at := d.off
	et, err := d.u32("array element type")
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if !elem.Valid() {
		return Value{}, d.errorf(ErrCorrupt, "array at byte %d has unknown element type %d", at, et)
	}
	n, err := d.count(elem.minSize(), "array element count")
	if err != nil {
		return Value{}, err
	}
	p := d.b[d.off:]
	var data any
	switch elem {
	case ValueUint8:
		data = decodeInts(p, n, 1, func(b []byte) uint8 { return b[0] })
	case ValueInt8:
		data = decodeInts(p, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case ValueUint16:
		data = decodeInts(p, n, 2, binary.LittleEndian.Uint16)
	case ValueInt16:
		data = decodeInts(p, n, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case ValueUint32:
		data = decodeInts(p, n, 4, binary.LittleEndian.Uint32)
	case ValueInt32:
		data = decodeInts(p, n, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case ValueFloat32:
		data = decodeInts(p, n, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case ValueUint64:
		data = decodeInts(p, n, 8, binary.LittleEndian.Uint64)
	case ValueInt64:
		data = decodeInts(p, n, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case ValueFloat64:
		data = decodeInts(p, n, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case ValueBool:
		bs := make([]bool, n)
		for i := range bs {
			if p[i] > 1 {
				return Value{}, d.errorf(ErrCorrupt, "bool array element %d at byte %d has value %d", i, d.off+i, p[i])
			}
			bs[i] = p[i] == 1
		}
		data = bs
	case ValueString:
		ss := make([]string, n)
		for i := range ss {
			if ss[i], err = d.str("string array element"); err != nil {
				return Value{}, err
			}
		}
		return arrayValue(elem, ss), nil
	case ValueArray:
		vs := make([]Value, n)
		for i := range vs {
			if vs[i], err = d.array(depth + 1); err != nil {
				return Value{}, err
			}
		}
		return arrayValue(elem, vs), nil
	}
	d.off += n * elem.size() // count checked that n fixed-size elements fit
	return arrayValue(elem, data), nil
}

// decodeInts decodes n little-endian fixed-size numbers of size bytes from p.
func decodeInts[T any](p []byte, n, size int, get func([]byte) T) []T {
	x := make([]T, n)
	for i := range x {
		x[i] = get(p[i*size:])
	}
	return x
}

// Parse parses a GGUF file held in memory. The File's tensor data are slices of data, so
// data must not change while the File is in use. Close on the result does nothing.
//
// Parse checks the whole header against len(data): every count, length and tensor extent
// must fit in the file. Errors wrap ErrNotGGUF, ErrVersion, ErrTruncated, ErrCorrupt or
// ErrUnknownType and name what was wrong and where.
func Parse(data []byte) (*File, error) {
	d := &decoder{b: data}
	if len(data) < len(Magic) || string(data[:len(Magic)]) != Magic {
		n := min(len(data), len(Magic))
		return nil, fmt.Errorf("%w: starts with %q, want %q", ErrNotGGUF, data[:n], Magic)
	}
	d.off = len(Magic)
	version, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	if version != 2 && version != 3 {
		if v := bits.ReverseBytes32(version); v == 2 || v == 3 {
			return nil, fmt.Errorf("%w: big-endian GGUF (version %d), this package reads little-endian files", ErrVersion, v)
		}
		return nil, fmt.Errorf("%w: version %d, this package reads versions 2 and 3", ErrVersion, version)
	}
	f := &File{Version: version, Alignment: DefaultAlignment, data: data}
	nTensors, err := d.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64("metadata count")
	if err != nil {
		return nil, err
	}
	if nKV > uint64(d.left()/minKVSize) {
		return nil, fmt.Errorf("%w: %d metadata entries cannot fit in the %d bytes left", ErrTruncated, nKV, d.left())
	}
	f.KV = make([]KV, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	for i := range int(nKV) {
		d.enter("metadata entry", "metadata key", i)
		key, err := d.str("key")
		if err != nil {
			return nil, err
		}
		d.name, d.named = key, true
		if _, dup := f.kvIndex[key]; dup {
			return nil, d.errorf(ErrCorrupt, "appears twice")
		}
		at := d.off
		t, err := d.u32("value type")
		if err != nil {
			return nil, err
		}
		if !ValueType(t).Valid() {
			return nil, d.errorf(ErrCorrupt, "unknown value type %d at byte %d", t, at)
		}
		v, err := d.value(ValueType(t), 0)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	d.enter("", "", 0)
	if v, ok := f.Get(KeyAlignment); ok {
		a, ok := v.AsUint()
		if !ok || a == 0 || a > maxAlignment || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: %s is %v (%v), want a power of two from 1 to %d", ErrCorrupt, KeyAlignment, v, v.Type, maxAlignment)
		}
		f.Alignment = int(a)
	}

	if nTensors > uint64(d.left()/minTensorInfoSize) {
		return nil, fmt.Errorf("%w: %d tensor infos cannot fit in the %d bytes left", ErrTruncated, nTensors, d.left())
	}
	f.Tensors = make([]TensorInfo, nTensors)
	f.tensorIndex = make(map[string]int, nTensors)
	for i := range f.Tensors {
		d.enter("tensor info", "tensor", i)
		if err := d.tensorInfo(&f.Tensors[i]); err != nil {
			return nil, err
		}
		name := f.Tensors[i].Name
		if _, dup := f.tensorIndex[name]; dup {
			return nil, d.errorf(ErrCorrupt, "appears twice")
		}
		f.tensorIndex[name] = i
	}
	d.enter("", "", 0)

	// The data section starts at the next multiple of the alignment. A file without
	// tensors may end before it.
	start := (uint64(d.off) + uint64(f.Alignment) - 1) &^ (uint64(f.Alignment) - 1)
	if start > uint64(len(data)) {
		if nTensors > 0 {
			return nil, fmt.Errorf("%w: data section starts at byte %d, past the end of the file (%d)", ErrTruncated, start, len(data))
		}
		start = uint64(len(data))
	}
	f.DataOffset = int(start)
	dataLen := uint64(len(data)) - start
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset%uint64(f.Alignment) != 0 {
			return nil, fmt.Errorf("%w: tensor %q offset %d is not a multiple of the alignment %d", ErrCorrupt, t.Name, t.Offset, f.Alignment)
		}
		size, err := tensorSize(t)
		if err != nil {
			return nil, err
		}
		if t.Offset > dataLen || size > dataLen-t.Offset {
			return nil, fmt.Errorf("%w: tensor %q offset %d + %d bytes past end of file (%d data bytes from byte %d)", ErrTruncated, t.Name, t.Offset, size, dataLen, start)
		}
		t.Size = int(size)
	}
	return f, nil
}

// tensorInfo reads a tensor info into t; its size is checked later, once the data
// section's start is known.
func (d *decoder) tensorInfo(t *TensorInfo) error {
	var err error
	if t.Name, err = d.str("name"); err != nil {
		return err
	}
	d.name, d.named = t.Name, true
	at := d.off
	nd, err := d.u32("dimension count")
	if err != nil {
		return err
	}
	if nd > MaxDims {
		return d.errorf(ErrCorrupt, "%d dimensions at byte %d, at most %d allowed", nd, at, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	for j := range t.Dims {
		if t.Dims[j], err = d.u64("dimension"); err != nil {
			return err
		}
	}
	at = d.off
	typ, err := d.u32("type")
	if err != nil {
		return err
	}
	t.Type = Type(typ)
	if !t.Type.Known() {
		return d.errorf(ErrUnknownType, "type id %d at byte %d", typ, at)
	}
	t.Offset, err = d.u64("offset")
	return err
}

// tensorSize returns the encoded size of t in bytes, failing if the type's blocks do not
// tile its rows or the size overflows.
func tensorSize(t *TensorInfo) (uint64, error) {
	// Rows are dims[0] elements long; their count is the product of the other dims. A
	// tensor without dims holds one element.
	width, rows := uint64(1), uint64(1)
	if len(t.Dims) > 0 {
		width = t.Dims[0]
		for _, n := range t.Dims[1:] {
			hi, lo := bits.Mul64(rows, n)
			if hi != 0 {
				return 0, fmt.Errorf("%w: tensor %q dims %v: element count overflows", ErrCorrupt, t.Name, t.Dims)
			}
			rows = lo
		}
	}
	bs, bb := uint64(t.Type.BlockSize()), uint64(t.Type.BlockBytes())
	if width > math.MaxInt || width/bs > math.MaxInt/bb {
		return 0, fmt.Errorf("%w: tensor %q dims %v: a row of %d %v elements is too long", ErrCorrupt, t.Name, t.Dims, width, t.Type)
	}
	rowBytes, err := t.Type.RowBytes(int(width))
	if err != nil {
		return 0, fmt.Errorf("tensor %q dims %v: %w", t.Name, t.Dims, err)
	}
	hi, size := bits.Mul64(uint64(rowBytes), rows)
	if hi != 0 || size > math.MaxInt {
		return 0, fmt.Errorf("%w: tensor %q dims %v: byte size overflows", ErrCorrupt, t.Name, t.Dims)
	}
	return size, nil
}
