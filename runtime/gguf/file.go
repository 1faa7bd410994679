package gguf

import (
	"fmt"
)

// File is a parsed GGUF file: its metadata, its tensor table, and (through Tensor) its
// tensor data, which stay in the file's memory (see Open) and are never copied again.
//
// A File is safe for concurrent use by readers. Metadata (KV, Tensors and the values the
// lookup methods return) are copies and stay valid after Close; tensor bytes do not.
type File struct {
	// Version is the GGUF version, 2 or 3.
	Version uint32
	// Alignment is the alignment in bytes of the data section and of every tensor offset:
	// general.alignment, or DefaultAlignment (32) without it.
	Alignment int
	// DataOffset is the position in the file of the data section, which tensor offsets are
	// relative to.
	DataOffset int
	// KV is the metadata in file order. Keys are unique.
	KV []KV
	// Tensors is the tensor table in file order. Names are unique.
	Tensors []TensorInfo

	data        []byte       // the whole file
	unmap       func() error // releases data; nil if there is nothing to release
	kvIndex     map[string]int
	tensorIndex map[string]int
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor: its name, shape, element type and where its data lie.
type TensorInfo struct {
	// Name is the tensor's name, e.g. "blk.0.attn_q.weight".
	Name string
	// Dims is the shape, innermost first: Dims[0] is the row length in elements, and the
	// number of rows is the product of the other dims. A 2-D weight of Dims [in, out] is
	// stored as out rows of in elements.
	Dims []uint64
	// Type is the element type; rows are stored as Dims[0]/Type.BlockSize() blocks.
	Type Type
	// Offset is the position of the first byte relative to the data section
	// (File.DataOffset); it is a multiple of File.Alignment.
	Offset uint64
	// Size is the encoded size in bytes.
	Size int
}

// Elements returns the number of elements of t: the product of its dims.
// Parse has checked that it does not overflow.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Rows returns the number of rows of t: the product of all dims but the first.
func (t *TensorInfo) Rows() uint64 {
	n := uint64(1)
	for _, d := range t.Dims[min(1, len(t.Dims)):] {
		n *= d
	}
	return n
}

// Close releases the file's memory (mapping or huge pages). Tensor bytes returned by Tensor must not be
// used afterwards; metadata stay valid. Close on a File from Parse, or a second Close, does
// nothing.
func (f *File) Close() error {
	unmap := f.unmap
	f.unmap, f.data = nil, nil
	if unmap == nil {
		return nil
	}
	return unmap()
}

// Tensor returns the info and the encoded bytes of the named tensor. The bytes are a
// slice of the file's memory (its mapping, or its copy in huge pages: see Open), not a
// copy of their own: they are read-only (writing to them faults) and valid until Close. It returns an error wrapping ErrNotFound if there is no such tensor.
func (f *File) Tensor(name string) (*TensorInfo, []byte, error) {
	i, ok := f.tensorIndex[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: tensor %q", ErrNotFound, name)
	}
	t := &f.Tensors[i]
	if f.data == nil && t.Size > 0 {
		return nil, nil, fmt.Errorf("gguf: tensor %q: file is closed", name)
	}
	start := f.DataOffset + int(t.Offset)
	end := start + t.Size
	return t, f.data[start:end:end], nil
}

// Get returns the value of a metadata key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// Has reports whether the file has the metadata key.
func (f *File) Has(key string) bool {
	_, ok := f.kvIndex[key]
	return ok
}

// lookup returns the value of key, or an error wrapping ErrNotFound.
func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Get(key)
	if !ok {
		return Value{}, fmt.Errorf("%w: metadata key %q", ErrNotFound, key)
	}
	return v, nil
}

// typeError reports a metadata value whose type is not what the caller asked for.
func typeError(key string, v Value, want string) error {
	t := v.Type.String()
	if v.Type == ValueArray {
		t = fmt.Sprintf("array of %d %v", v.Len(), v.Elem())
	}
	return fmt.Errorf("%w: metadata key %q is %s %v, want %s", ErrCorrupt, key, t, v, want)
}

// String returns a string metadata value. It fails with ErrNotFound if the key is absent
// and ErrCorrupt if the value is not a string.
func (f *File) String(key string) (string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	s, ok := v.AsString()
	if !ok {
		return "", typeError(key, v, "a string")
	}
	return s, nil
}

// Uint returns an integer metadata value of any unsigned type, or of a signed type if it
// is not negative. It fails with ErrNotFound if the key is absent and ErrCorrupt otherwise.
func (f *File) Uint(key string) (uint64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	n, ok := v.AsUint()
	if !ok {
		return 0, typeError(key, v, "a non-negative integer")
	}
	return n, nil
}

// Int returns an integer metadata value of any type that fits in an int64. It fails with
// ErrNotFound if the key is absent and ErrCorrupt otherwise.
func (f *File) Int(key string) (int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	n, ok := v.AsInt()
	if !ok {
		return 0, typeError(key, v, "an integer")
	}
	return n, nil
}

// Float returns a float32 or float64 metadata value. It fails with ErrNotFound if the key
// is absent and ErrCorrupt for other types.
func (f *File) Float(key string) (float64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.AsFloat()
	if !ok {
		return 0, typeError(key, v, "a float")
	}
	return x, nil
}

// Bool returns a bool metadata value. It fails with ErrNotFound if the key is absent and
// ErrCorrupt for other types.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	b, ok := v.AsBool()
	if !ok {
		return false, typeError(key, v, "a bool")
	}
	return b, nil
}

// Strings returns a string-array metadata value as a new slice. It fails with ErrNotFound
// if the key is absent and ErrCorrupt for other types.
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	s, ok := v.AsStrings()
	if !ok {
		return nil, typeError(key, v, "an array of strings")
	}
	return s, nil
}

// Float32s returns a float32-array (or float64-array) metadata value as a new []float32.
// It fails with ErrNotFound if the key is absent and ErrCorrupt for other types.
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	x, ok := v.AsFloat32s()
	if !ok {
		return nil, typeError(key, v, "an array of floats")
	}
	return x, nil
}

// Int32s returns an integer-array metadata value (of any integer element type whose
// values fit) as a new []int32. It fails with ErrNotFound if the key is absent and
// ErrCorrupt for other types or out-of-range elements.
func (f *File) Int32s(key string) ([]int32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	x, ok := v.AsInt32s()
	if !ok {
		return nil, typeError(key, v, "an array of int32")
	}
	return x, nil
}

// Architecture returns general.architecture, e.g. "llama".
func (f *File) Architecture() (string, error) {
	return f.String(KeyArchitecture)
}
