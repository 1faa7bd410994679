package gguf

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ValueType is the type of a metadata value, with the numeric ids GGUF files use.
type ValueType uint32

// The metadata value types of GGUF versions 2 and 3.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	ValueUint8:   "uint8",
	ValueInt8:    "int8",
	ValueUint16:  "uint16",
	ValueInt16:   "int16",
	ValueUint32:  "uint32",
	ValueInt32:   "int32",
	ValueFloat32: "float32",
	ValueBool:    "bool",
	ValueString:  "string",
	ValueArray:   "array",
	ValueUint64:  "uint64",
	ValueInt64:   "int64",
	ValueFloat64: "float64",
}

// Valid reports whether t is one of the value types GGUF defines.
func (t ValueType) Valid() bool { return t <= ValueFloat64 }

// String returns the GGUF name of t ("uint32", "string", ...), or "valuetype(N)" for an
// unknown id.
func (t ValueType) String() string {
	if t.Valid() {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// size is the encoded size in bytes of a fixed-size value of type t, or 0 for strings and
// arrays, whose size depends on their content.
func (t ValueType) size() int {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

// minSize is the fewest bytes one encoded value of type t can take: its fixed size, the
// 8-byte length of a string, or the 4-byte element type and 8-byte count of an array.
func (t ValueType) minSize() int {
	switch t {
	case ValueString:
		return 8
	case ValueArray:
		return 12
	}
	return t.size()
}

func (t ValueType) signed() bool {
	return t == ValueInt8 || t == ValueInt16 || t == ValueInt32 || t == ValueInt64
}

func (t ValueType) unsigned() bool {
	return t == ValueUint8 || t == ValueUint16 || t == ValueUint32 || t == ValueUint64
}

// Value is one metadata value: a scalar, a string, or an array of values of one type
// (arrays may nest). The zero Value is a uint8 0.
//
// Values are immutable: slices the accessors return are copies. Compare Values with
// Equal; == compares arrays by identity.
type Value struct {
	// Type is the value's type. For an array, Elem gives the element type.
	Type ValueType

	num uint64 // integers (signed ones sign-extended), float bits, bool as 0 or 1
	str string
	arr *array
}

// array holds an array's elements as a typed slice: []uint8, []int8, []uint16, []int16,
// []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64, or []Value
// (every element an array) for nested arrays.
type array struct {
	elem ValueType
	data any
}

// ValueOf converts a Go value to a Value. It accepts the sized Go types that match a GGUF
// type one to one (uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32,
// float64, bool, string), slices of them, []Value whose elements are all arrays of one
// element type (a nested array), and a Value, returned as is. Plain int and uint are
// rejected: their GGUF width would be a guess.
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		return x, nil
	case uint8:
		return Value{Type: ValueUint8, num: uint64(x)}, nil
	case int8:
		return Value{Type: ValueInt8, num: uint64(int64(x))}, nil
	case uint16:
		return Value{Type: ValueUint16, num: uint64(x)}, nil
	case int16:
		return Value{Type: ValueInt16, num: uint64(int64(x))}, nil
	case uint32:
		return Value{Type: ValueUint32, num: uint64(x)}, nil
	case int32:
		return Value{Type: ValueInt32, num: uint64(int64(x))}, nil
	case uint64:
		return Value{Type: ValueUint64, num: x}, nil
	case int64:
		return Value{Type: ValueInt64, num: uint64(x)}, nil
	case float32:
		return Value{Type: ValueFloat32, num: uint64(math.Float32bits(x))}, nil
	case float64:
		return Value{Type: ValueFloat64, num: math.Float64bits(x)}, nil
	case bool:
		var n uint64
		if x {
			n = 1
		}
		return Value{Type: ValueBool, num: n}, nil
	case string:
		return Value{Type: ValueString, str: x}, nil
	case []uint8:
		return arrayValue(ValueUint8, slices.Clone(x)), nil
	case []int8:
		return arrayValue(ValueInt8, slices.Clone(x)), nil
	case []uint16:
		return arrayValue(ValueUint16, slices.Clone(x)), nil
	case []int16:
		return arrayValue(ValueInt16, slices.Clone(x)), nil
	case []uint32:
		return arrayValue(ValueUint32, slices.Clone(x)), nil
	case []int32:
		return arrayValue(ValueInt32, slices.Clone(x)), nil
	case []uint64:
		return arrayValue(ValueUint64, slices.Clone(x)), nil
	case []int64:
		return arrayValue(ValueInt64, slices.Clone(x)), nil
	case []float32:
		return arrayValue(ValueFloat32, slices.Clone(x)), nil
	case []float64:
		return arrayValue(ValueFloat64, slices.Clone(x)), nil
	case []bool:
		return arrayValue(ValueBool, slices.Clone(x)), nil
	case []string:
		return arrayValue(ValueString, slices.Clone(x)), nil
	case []Value:
		for i, v := range x {
			if v.Type != ValueArray || v.arr == nil {
				return Value{}, fmt.Errorf("gguf: element %d of a nested array is a %v, not an array", i, v.Type)
			}
		}
		return arrayValue(ValueArray, slices.Clone(x)), nil
	}
	return Value{}, fmt.Errorf("gguf: no GGUF metadata type for Go type %T", x)
}

func arrayValue(elem ValueType, data any) Value {
	return Value{Type: ValueArray, arr: &array{elem: elem, data: data}}
}

// Elem returns the element type of an array, and 0 (ValueUint8) for other values.
func (v Value) Elem() ValueType {
	if v.arr == nil {
		return 0
	}
	return v.arr.elem
}

// Len returns the number of elements of an array, and 0 for other values.
func (v Value) Len() int {
	if v.arr == nil {
		return 0
	}
	switch d := v.arr.data.(type) {
	case []uint8:
		return len(d)
	case []int8:
		return len(d)
	case []uint16:
		return len(d)
	case []int16:
		return len(d)
	case []uint32:
		return len(d)
	case []int32:
		return len(d)
	case []uint64:
		return len(d)
	case []int64:
		return len(d)
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	case []Value:
		return len(d)
	}
	return 0
}

// Index returns element i of an array. It panics if v is not an array or i is out of
// range, like indexing a slice.
func (v Value) Index(i int) Value {
	if v.arr == nil {
		panic("gguf: Index of a non-array Value")
	}
	var (
		x   Value
		err error
	)
	switch d := v.arr.data.(type) {
	case []uint8:
		x, err = ValueOf(d[i])
	case []int8:
		x, err = ValueOf(d[i])
	case []uint16:
		x, err = ValueOf(d[i])
	case []int16:
		x, err = ValueOf(d[i])
	case []uint32:
		x, err = ValueOf(d[i])
	case []int32:
		x, err = ValueOf(d[i])
	case []uint64:
		x, err = ValueOf(d[i])
	case []int64:
		x, err = ValueOf(d[i])
	case []float32:
		x, err = ValueOf(d[i])
	case []float64:
		x, err = ValueOf(d[i])
	case []bool:
		x, err = ValueOf(d[i])
	case []string:
		x, err = ValueOf(d[i])
	case []Value:
		x = d[i]
	}
	if err != nil {
		panic("gguf: " + err.Error()) // unreachable: every element type converts
	}
	return x
}

// AsUint returns v as an unsigned integer: any unsigned integer, or a signed integer that
// is not negative. ok is false for other types and negative values.
func (v Value) AsUint() (n uint64, ok bool) {
	switch {
	case v.Type.unsigned():
		return v.num, true
	case v.Type.signed() && int64(v.num) >= 0:
		return v.num, true
	}
	return 0, false
}

// AsInt returns v as a signed integer: any signed integer, or an unsigned one that fits in
// an int64. ok is false otherwise.
func (v Value) AsInt() (n int64, ok bool) {
	switch {
	case v.Type.signed():
		return int64(v.num), true
	case v.Type.unsigned() && v.num <= math.MaxInt64:
		return int64(v.num), true
	}
	return 0, false
}

// AsFloat returns a float32 or float64 value as a float64. ok is false for other types.
func (v Value) AsFloat() (x float64, ok bool) {
	switch v.Type {
	case ValueFloat32:
		return float64(math.Float32frombits(uint32(v.num))), true
	case ValueFloat64:
		return math.Float64frombits(v.num), true
	}
	return 0, false
}

// AsBool returns a bool value. ok is false for other types.
func (v Value) AsBool() (b, ok bool) {
	if v.Type != ValueBool {
		return false, false
	}
	return v.num != 0, true
}

// AsString returns a string value. ok is false for other types.
func (v Value) AsString() (s string, ok bool) {
	if v.Type != ValueString {
		return "", false
	}
	return v.str, true
}

// AsStrings returns a copy of an array of strings. ok is false for other values.
func (v Value) AsStrings() (s []string, ok bool) {
	if v.arr == nil {
		return nil, false
	}
	d, ok := v.arr.data.([]string)
	return slices.Clone(d), ok
}

// AsFloat32s returns an array of float32 (or float64, rounded to float32) as a new slice.
// ok is false for other values.
func (v Value) AsFloat32s() (x []float32, ok bool) {
	if v.arr == nil {
		return nil, false
	}
	switch d := v.arr.data.(type) {
	case []float32:
		return slices.Clone(d), true
	case []float64:
		x = make([]float32, len(d))
		for i, f := range d {
			x[i] = float32(f)
		}
		return x, true
	}
	return nil, false
}

// AsInt32s returns an array of integers of any type as a new []int32. ok is false for
// other values and when an element does not fit in an int32.
func (v Value) AsInt32s() (x []int32, ok bool) {
	if v.arr == nil || !(v.arr.elem.signed() || v.arr.elem.unsigned()) {
		return nil, false
	}
	switch d := v.arr.data.(type) {
	case []int32:
		return slices.Clone(d), true
	case []uint8:
		return convertInts(d)
	case []int8:
		return convertInts(d)
	case []uint16:
		return convertInts(d)
	case []int16:
		return convertInts(d)
	case []uint32:
		return convertInts(d)
	case []uint64:
		return convertInts(d)
	case []int64:
		return convertInts(d)
	}
	return nil, false
}

type integer interface {
	~uint8 | ~int8 | ~uint16 | ~int16 | ~uint32 | ~int32 | ~uint64 | ~int64
}

// convertInts converts d to int32s, failing if any element is out of range.
func convertInts[T integer](d []T) ([]int32, bool) {
	x := make([]int32, len(d))
	for i, n := range d {
		if n < 0 {
			if int64(n) < math.MinInt32 {
				return nil, false
			}
		} else if uint64(n) > math.MaxInt32 {
			return nil, false
		}
		x[i] = int32(n)
	}
	return x, true
}

// Equal reports whether v and w have the same type and the same content. Floats compare by
// bits, so a NaN equals the same NaN.
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type {
		return false
	}
	if v.Type != ValueArray {
		return v.num == w.num && v.str == w.str
	}
	if v.Elem() != w.Elem() || v.Len() != w.Len() {
		return false
	}
	for i := range v.Len() {
		if !v.Index(i).Equal(w.Index(i)) {
			return false
		}
	}
	return true
}

// String formats v for people: numbers in Go syntax, strings quoted, arrays as their first
// few elements and their length.
func (v Value) String() string {
	switch {
	case v.Type.unsigned():
		return strconv.FormatUint(v.num, 10)
	case v.Type.signed():
		return strconv.FormatInt(int64(v.num), 10)
	}
	switch v.Type {
	case ValueFloat32:
		return strconv.FormatFloat(float64(math.Float32frombits(uint32(v.num))), 'g', -1, 32)
	case ValueFloat64:
		return strconv.FormatFloat(math.Float64frombits(v.num), 'g', -1, 64)
	case ValueBool:
		return strconv.FormatBool(v.num != 0)
	case ValueString:
		return strconv.Quote(v.str)
	case ValueArray:
		const show = 8
		var b strings.Builder
		b.WriteByte('[')
		n := v.Len()
		for i := range min(n, show) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(v.Index(i).String())
		}
		if n > show {
			fmt.Fprintf(&b, ", ... (%d %v)", n, v.Elem())
		}
		b.WriteByte(']')
		return b.String()
	}
	return fmt.Sprintf("<%v>", v.Type)
}
