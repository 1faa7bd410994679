package gguf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"squeeze/runtime/gguf"
)

// raw builds GGUF bytes field by field, so tests can write what the Writer refuses to.
type raw []byte

func (r raw) u32(v uint32) raw { return binary.LittleEndian.AppendUint32(r, v) }
func (r raw) u64(v uint64) raw { return binary.LittleEndian.AppendUint64(r, v) }
func (r raw) str(s string) raw { return append(r.u64(uint64(len(s))), s...) }

// header starts a file: magic, version, tensor count, metadata count.
func header(version uint32, tensors, kvs uint64) raw {
	return raw("GGUF").u32(version).u64(tensors).u64(kvs)
}

// kvU32 appends a uint32 metadata entry.
func (r raw) kvU32(key string, v uint32) raw { return r.str(key).u32(4).u32(v) }

// tensor appends a tensor info.
func (r raw) tensor(name string, typ gguf.Type, offset uint64, dims ...uint64) raw {
	r = r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r = r.u64(d)
	}
	return r.u32(uint32(typ)).u64(offset)
}

// data pads r to a multiple of align and appends n zero bytes of tensor data.
func (r raw) data(align, n int) raw {
	for len(r)%align != 0 {
		r = append(r, 0)
	}
	return append(r, make([]byte, n)...)
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want error
		msg  string // a substring the message must contain
	}{
		{"empty", nil, gguf.ErrNotGGUF, `""`},
		{"short magic", []byte("GG"), gguf.ErrNotGGUF, `"GG"`},
		{"other file", []byte("\x7fELF\x02\x01\x01\x00"), gguf.ErrNotGGUF, `ELF`},
		{"lowercase magic", raw("gguf").u32(3).u64(0).u64(0), gguf.ErrNotGGUF, `"gguf"`},
		{"no version", []byte("GGUF\x03"), gguf.ErrTruncated, "version"},
		{"version 1", header(1, 0, 0), gguf.ErrVersion, "version 1"},
		{"version 4", header(4, 0, 0), gguf.ErrVersion, "version 4"},
		{"big-endian version", raw("GGUF").u32(3 << 24), gguf.ErrVersion, "big-endian"},
		{"no counts", raw("GGUF").u32(3).u64(0), gguf.ErrTruncated, "metadata count"},
		{"huge metadata count", header(3, 0, 1<<62), gguf.ErrTruncated, "metadata entries"},
		{"huge tensor count", header(3, 1<<62, 0), gguf.ErrTruncated, "tensor infos"},
		{"max tensor count", header(3, math.MaxUint64, 0), gguf.ErrTruncated, "tensor infos"},
		{"huge key length", header(3, 0, 1).u64(1 << 60).u32(0).u8s(1), gguf.ErrTruncated, "1152921504606846976"},
		{"key past end", header(3, 0, 1).u64(20).u8s(make([]byte, 13)...), gguf.ErrTruncated, "metadata entry 0: key of 20 bytes"},
		{"huge string value", header(3, 0, 1).str("k").u32(8).u64(1 << 60), gguf.ErrTruncated, `"k"`},
		{"huge array count", header(3, 0, 1).str("k").u32(9).u32(0).u64(1 << 60), gguf.ErrTruncated, "element count"},
		{"array of strings too long", header(3, 0, 1).str("k").u32(9).u32(8).u64(3).str("a"), gguf.ErrTruncated, ""},
		{"huge nested array count", header(3, 0, 1).str("k").u32(9).u32(9).u64(1 << 40), gguf.ErrTruncated, "element count"},
		{"unknown value type", header(3, 0, 1).str("k").u32(13).u32(0), gguf.ErrCorrupt, "value type 13"},
		{"unknown element type", header(3, 0, 1).str("k").u32(9).u32(77).u64(0), gguf.ErrCorrupt, "element type 77"},
		{"bool 2", header(3, 0, 1).str("k").u32(7).u8s(2), gguf.ErrCorrupt, "bool"},
		{"bool array 5", header(3, 0, 1).str("k").u32(9).u32(7).u64(2).u8s(1, 5), gguf.ErrCorrupt, "element 1"},
		{"nesting too deep", deepArray(20), gguf.ErrCorrupt, "deep"},
		{"duplicate key", header(3, 0, 2).kvU32("k", 1).kvU32("k", 2), gguf.ErrCorrupt, `metadata key "k": appears twice`},
		{"alignment 0", header(3, 0, 1).kvU32("general.alignment", 0), gguf.ErrCorrupt, "general.alignment"},
		{"alignment 48", header(3, 0, 1).kvU32("general.alignment", 48), gguf.ErrCorrupt, "48"},
		{"alignment 2^31", header(3, 0, 1).kvU32("general.alignment", 1<<31), gguf.ErrCorrupt, "2147483648"},
		{"alignment string", header(3, 0, 1).str("general.alignment").u32(8).str("32"), gguf.ErrCorrupt, "string"},
		{"alignment negative", header(3, 0, 1).str("general.alignment").u32(5).u32(0xffffffe0), gguf.ErrCorrupt, "-32"},
		{"unknown tensor type", header(3, 1, 0).tensor("w", 99, 0, 32).data(32, 32), gguf.ErrUnknownType, `"w"`},
		{"removed tensor type 4", header(3, 1, 0).tensor("w", 4, 0, 32).data(32, 32), gguf.ErrUnknownType, "type id 4"},
		{"five dims", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 1, 1, 1, 1, 1).data(32, 4), gguf.ErrCorrupt, "5 dimensions"},
		{"huge dim count", header(3, 1, 0).str("w").u32(1 << 31).u8s(make([]byte, 16)...), gguf.ErrCorrupt, "dimensions"},
		{"misaligned offset", header(3, 1, 0).tensor("w", gguf.TypeF32, 4, 1).data(32, 64), gguf.ErrCorrupt, "offset 4"},
		{"offset past end", header(3, 1, 0).tensor("w", gguf.TypeF32, 64, 1).data(32, 32), gguf.ErrTruncated, `"w" offset 64`},
		{"data past end", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 4, 3).data(32, 32), gguf.ErrTruncated, `"w" offset 0 + 48 bytes`},
		{"huge offset", header(3, 1, 0).tensor("w", gguf.TypeF32, 1<<63, 1).data(32, 32), gguf.ErrTruncated, `"w"`},
		{"no data section", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 1), gguf.ErrTruncated, "data section"},
		{"partial block", header(3, 1, 0).tensor("w", gguf.TypeQ8_0, 0, 33).data(32, 68), gguf.ErrCorrupt, "blocks"},
		{"huge row", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 1<<62).data(32, 32), gguf.ErrCorrupt, "too long"},
		{"long row", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 1<<40).data(32, 32), gguf.ErrTruncated, `"w"`},
		{"max row", header(3, 1, 0).tensor("w", gguf.TypeQ4_K, 0, math.MaxUint64).data(32, 32), gguf.ErrCorrupt, "too long"},
		{"element count overflow", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 1, 1<<32, 1<<32, 1<<32).data(32, 32), gguf.ErrCorrupt, "overflows"},
		{"byte size overflow", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 4, 1<<62).data(32, 32), gguf.ErrCorrupt, "overflows"},
		{"too many rows", header(3, 1, 0).tensor("w", gguf.TypeF32, 0, 4, 1<<40).data(32, 32), gguf.ErrTruncated, `"w"`},
		{"duplicate tensor", header(3, 2, 0).tensor("w", gguf.TypeF32, 0, 1).tensor("w", gguf.TypeF32, 32, 1).data(32, 64), gguf.ErrCorrupt, `tensor "w": appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := gguf.Parse(tc.data)
			if err == nil {
				t.Fatalf("no error; parsed %d keys, %d tensors", len(f.KV), len(f.Tensors))
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q does not wrap %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func (r raw) u8s(b ...byte) raw { return append(r, b...) }

// deepArray returns a file whose one metadata value is an array nested depth deep.
func deepArray(depth int) raw {
	r := header(3, 0, 1).str("deep").u32(9)
	for range depth - 1 {
		r = r.u32(9).u64(1)
	}
	return r.u32(0).u64(0)
}

// TestParseAccepts covers unusual but valid files.
func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty v3", header(3, 0, 0)},
		{"empty v2", header(2, 0, 0)},
		{"nesting at the limit", deepArray(8)},
		{"zero rows", header(3, 1, 0).tensor("w", gguf.TypeQ4_K, 0, 256, 0).data(32, 0)},
		{"tensors sharing bytes", header(3, 2, 0).tensor("a", gguf.TypeF32, 0, 8).tensor("b", gguf.TypeF32, 0, 8).data(32, 32)},
		{"alignment 1", header(3, 1, 1).kvU32("general.alignment", 1).tensor("w", gguf.TypeI8, 3, 1).data(1, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := gguf.Parse(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			for _, ti := range f.Tensors {
				if _, b, err := f.Tensor(ti.Name); err != nil || len(b) != ti.Size {
					t.Errorf("Tensor(%q): %d bytes, %v; want %d", ti.Name, len(b), err, ti.Size)
				}
			}
		})
	}
}

// TestTruncatedPrefixes parses every proper prefix of a small file: each must fail
// (with ErrNotGGUF for the first four bytes and ErrTruncated after) and none may panic.
func TestTruncatedPrefixes(t *testing.T) {
	data := sampleFile(t)
	for n := range len(data) {
		f, err := gguf.Parse(data[:n:n])
		switch {
		case err == nil:
			t.Fatalf("prefix of %d of %d bytes parsed: %d keys, %d tensors", n, len(data), len(f.KV), len(f.Tensors))
		case n < 4 && !errors.Is(err, gguf.ErrNotGGUF):
			t.Fatalf("prefix of %d bytes: %v, want ErrNotGGUF", n, err)
		case n >= 4 && !errors.Is(err, gguf.ErrTruncated):
			t.Fatalf("prefix of %d bytes: %v, want ErrTruncated", n, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := gguf.Open(filepath.Join(dir, "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	// A device cannot be mapped: Open reads it instead, finding nothing.
	if _, err := gguf.Open(os.DevNull); !errors.Is(err, gguf.ErrNotGGUF) {
		t.Errorf("Open(%s): %v, want ErrNotGGUF", os.DevNull, err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty.gguf", nil, gguf.ErrNotGGUF},
		{"text.gguf", []byte("hello, world\n"), gguf.ErrNotGGUF},
		{"v1.gguf", header(1, 0, 0), gguf.ErrVersion},
		{"cut.gguf", sampleFile(t)[:300], gguf.ErrTruncated},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := gguf.Open(path)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("Open(%s): %v, want an error wrapping %q that names the file", tc.name, err, tc.want)
		}
	}
}

func TestOpenClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sample.gguf")
	data := sampleFile(t)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := f.Tensor("blk.0.q8")
	if err != nil || len(b) != 2*2*34 {
		t.Fatalf("Tensor: %d bytes, %v", len(b), err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := f.Tensor("blk.0.q8"); err == nil {
		t.Error("Tensor after Close: no error")
	}
	if a, err := f.Architecture(); err != nil || a != "llama" {
		t.Errorf("metadata after Close: %q, %v", a, err)
	}
}

// TestLookups checks each typed metadata helper on the right type, a convertible type, a
// wrong type (ErrCorrupt) and a missing key (ErrNotFound).
func TestLookups(t *testing.T) {
	f, err := gguf.Parse(sampleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	ok := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	fails := func(name string, err, want error, key string) {
		t.Helper()
		if !errors.Is(err, want) || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("%s: %v, want an error wrapping %q naming %q", name, err, want, key)
		}
	}
	s, err := f.String("utf8")
	ok("String", s, "héllo\x00world", err)
	u, err := f.Uint("u64")
	ok("Uint(u64)", u, uint64(math.MaxUint64), err)
	u, err = f.Uint("u8")
	ok("Uint(u8)", u, uint64(200), err)
	i, err := f.Int("i64")
	ok("Int(i64)", i, int64(math.MinInt64), err)
	i, err = f.Int("u32")
	ok("Int(u32)", i, int64(4000000000), err)
	i, err = f.Int("i8")
	ok("Int(i8)", i, int64(-100), err)
	x, err := f.Float("f32")
	ok("Float(f32)", x, 1.5, err)
	x, err = f.Float("f64")
	ok("Float(f64)", x, math.Pi, err)
	b, err := f.Bool("t")
	ok("Bool", b, true, err)
	ss, err := f.Strings("a.str")
	ok("Strings", ss, []string{"<s>", "</s>", "Ġthe"}, err)
	ss, err = f.Strings("a.empty")
	ok("Strings(empty)", ss, []string{}, err)
	fs, err := f.Float32s("a.f32")
	ok("Float32s", fs, []float32{0.25, -2}, err)
	fs, err = f.Float32s("a.f64")
	ok("Float32s(f64)", fs, []float32{float32(math.Inf(1))}, err) // 1e300 rounds to +Inf
	is, err := f.Int32s("a.i32")
	ok("Int32s", is, []int32{-1, 0, 1}, err)
	is, err = f.Int32s("a.u32")
	ok("Int32s(u32)", is, []int32{1, 2, 3}, err)
	is, err = f.Int32s("a.i16")
	ok("Int32s(i16)", is, []int32{-32768, 7}, err)
	if !f.Has("u8") || f.Has("nope") {
		t.Error("Has is wrong")
	}
	if v, found := f.Get("a.nested"); !found || v.Type != gguf.ValueArray || v.Elem() != gguf.ValueArray || v.Len() != 2 || v.Index(1).Len() != 2 {
		t.Errorf("Get(a.nested) = %v, %v", v, found)
	}

	_, err = f.String("u8")
	fails("String(u8)", err, gguf.ErrCorrupt, "u8")
	_, err = f.Uint("i8")
	fails("Uint(negative)", err, gguf.ErrCorrupt, "i8")
	_, err = f.Uint("f32")
	fails("Uint(f32)", err, gguf.ErrCorrupt, "f32")
	_, err = f.Int("u64")
	fails("Int(too big)", err, gguf.ErrCorrupt, "u64")
	_, err = f.Float("u32")
	fails("Float(u32)", err, gguf.ErrCorrupt, "u32")
	_, err = f.Bool("u8")
	fails("Bool(u8)", err, gguf.ErrCorrupt, "u8")
	_, err = f.Strings("a.i32")
	fails("Strings(i32s)", err, gguf.ErrCorrupt, "a.i32")
	_, err = f.Strings("utf8")
	fails("Strings(string)", err, gguf.ErrCorrupt, "utf8")
	_, err = f.Float32s("a.i32")
	fails("Float32s(i32s)", err, gguf.ErrCorrupt, "a.i32")
	_, err = f.Int32s("a.u64")
	fails("Int32s(too big)", err, gguf.ErrCorrupt, "a.u64")
	_, err = f.Int32s("a.f32")
	fails("Int32s(floats)", err, gguf.ErrCorrupt, "a.f32")
	_, err = f.Int32s("a.nested")
	fails("Int32s(nested)", err, gguf.ErrCorrupt, "a.nested")
	for name, get := range map[string]func(string) error{
		"String":   func(k string) error { _, err := f.String(k); return err },
		"Uint":     func(k string) error { _, err := f.Uint(k); return err },
		"Int":      func(k string) error { _, err := f.Int(k); return err },
		"Float":    func(k string) error { _, err := f.Float(k); return err },
		"Bool":     func(k string) error { _, err := f.Bool(k); return err },
		"Strings":  func(k string) error { _, err := f.Strings(k); return err },
		"Float32s": func(k string) error { _, err := f.Float32s(k); return err },
		"Int32s":   func(k string) error { _, err := f.Int32s(k); return err },
	} {
		fails(name+"(missing)", get("missing.key"), gguf.ErrNotFound, "missing.key")
	}
	if _, _, err := f.Tensor("missing.weight"); !errors.Is(err, gguf.ErrNotFound) {
		t.Errorf("Tensor(missing): %v, want ErrNotFound", err)
	}
}
