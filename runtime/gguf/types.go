package gguf

import "fmt"

// Type is a ggml tensor element type, with the numeric ids GGUF files use.
type Type uint32

// The tensor types squeeze knows. Ids follow ggml's enum ggml_type.
const (
	TypeF32  Type = 0
	TypeF16  Type = 1
	TypeQ4_0 Type = 2
	TypeQ4_1 Type = 3
	TypeQ5_0 Type = 6
	TypeQ5_1 Type = 7
	TypeQ8_0 Type = 8
	TypeQ8_1 Type = 9
	TypeQ2_K Type = 10
	TypeQ3_K Type = 11
	TypeQ4_K Type = 12
	TypeQ5_K Type = 13
	TypeQ6_K Type = 14
	TypeQ8_K Type = 15
	TypeI8   Type = 24
	TypeI16  Type = 25
	TypeI32  Type = 26
	TypeI64  Type = 27
	TypeF64  Type = 28
	TypeBF16 Type = 30
)

type typeInfo struct {
	name       string
	blockSize  int // elements per block
	blockBytes int // bytes per block
}

var types = map[Type]typeInfo{
	TypeF32:  {"F32", 1, 4},
	TypeF16:  {"F16", 1, 2},
	TypeQ4_0: {"Q4_0", 32, 2 + 16},
	TypeQ4_1: {"Q4_1", 32, 2 + 2 + 16},
	TypeQ5_0: {"Q5_0", 32, 2 + 4 + 16},
	TypeQ5_1: {"Q5_1", 32, 2 + 2 + 4 + 16},
	TypeQ8_0: {"Q8_0", 32, 2 + 32},
	TypeQ8_1: {"Q8_1", 32, 4 + 4 + 32},
	TypeQ2_K: {"Q2_K", 256, 256/16 + 256/4 + 2 + 2},
	TypeQ3_K: {"Q3_K", 256, 256/8 + 256/4 + 12 + 2},
	TypeQ4_K: {"Q4_K", 256, 2 + 2 + 12 + 256/2},
	TypeQ5_K: {"Q5_K", 256, 2 + 2 + 12 + 256/8 + 256/2},
	TypeQ6_K: {"Q6_K", 256, 256/2 + 256/4 + 256/16 + 2},
	TypeQ8_K: {"Q8_K", 256, 4 + 256 + 256/16*2},
	TypeI8:   {"I8", 1, 1},
	TypeI16:  {"I16", 1, 2},
	TypeI32:  {"I32", 1, 4},
	TypeI64:  {"I64", 1, 8},
	TypeF64:  {"F64", 1, 8},
	TypeBF16: {"BF16", 1, 2},
}

// Known reports whether t is a tensor type this package can size.
func (t Type) Known() bool { _, ok := types[t]; return ok }

// String returns ggml's name for t, or "type(N)" for an unknown id.
func (t Type) String() string {
	if ti, ok := types[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize is the number of elements one block of t holds (1 for plain types).
// It is 0 for unknown types.
func (t Type) BlockSize() int { return types[t].blockSize }

// BlockBytes is the encoded size of one block of t in bytes. It is 0 for unknown types.
func (t Type) BlockBytes() int { return types[t].blockBytes }

// RowBytes returns the encoded size of n consecutive elements of type t.
// n must be a multiple of t's block size.
func (t Type) RowBytes(n int) (int, error) {
	ti, ok := types[t]
	if !ok {
		return 0, fmt.Errorf("%w: %v", ErrUnknownType, t)
	}
	if n < 0 || n%ti.blockSize != 0 {
		return 0, fmt.Errorf("%w: %d elements of %v is not a whole number of %d-element blocks", ErrCorrupt, n, t, ti.blockSize)
	}
	return n / ti.blockSize * ti.blockBytes, nil
}
