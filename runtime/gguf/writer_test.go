package gguf_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
)

// testTensor is one tensor for sampleFile; its bytes are filled from a seeded RNG.
type testTensor struct {
	name string
	typ  gguf.Type
	dims []uint64
}

var sampleTensors = []testTensor{
	{"token_embd.weight", gguf.TypeF16, []uint64{8, 5}},
	{"norm.weight", gguf.TypeF32, []uint64{3}},
	{"blk.0.q8", gguf.TypeQ8_0, []uint64{64, 2}},
	{"blk.0.q4k", gguf.TypeQ4_K, []uint64{256, 1, 2}},
	{"scalar", gguf.TypeI8, nil},
	{"cube", gguf.TypeBF16, []uint64{2, 2, 2, 2}},
}

// sampleKV holds one value of every metadata type, nested arrays included.
func sampleKV(t testing.TB) []gguf.KV {
	t.Helper()
	nested1, err := gguf.ValueOf([]int32{1, -2, 3})
	if err != nil {
		t.Fatal(err)
	}
	nested2, err := gguf.ValueOf([]string{"x", ""})
	if err != nil {
		t.Fatal(err)
	}
	raw := []struct {
		key string
		val any
	}{
		{"general.architecture", "llama"},
		{"u8", uint8(200)},
		{"i8", int8(-100)},
		{"u16", uint16(60000)},
		{"i16", int16(-30000)},
		{"u32", uint32(4000000000)},
		{"i32", int32(-2000000000)},
		{"u64", uint64(math.MaxUint64)},
		{"i64", int64(math.MinInt64)},
		{"f32", float32(1.5)},
		{"f64", math.Pi},
		{"t", true},
		{"f", false},
		{"empty", ""},
		{"utf8", "héllo\x00world"},
		{"a.u8", []uint8{0, 1, 255}},
		{"a.i8", []int8{-128, 0, 127}},
		{"a.u16", []uint16{1, 65535}},
		{"a.i16", []int16{-32768, 7}},
		{"a.u32", []uint32{1, 2, 3}},
		{"a.i32", []int32{-1, 0, 1}},
		{"a.u64", []uint64{1 << 63}},
		{"a.i64", []int64{-1 << 63, 5}},
		{"a.f32", []float32{0.25, -2}},
		{"a.f64", []float64{1e300}},
		{"a.bool", []bool{true, false, true}},
		{"a.str", []string{"<s>", "</s>", "Ġthe"}},
		{"a.empty", []string{}},
		{"a.nested", []gguf.Value{nested1, nested2}},
	}
	kv := make([]gguf.KV, len(raw))
	for i, r := range raw {
		v, err := gguf.ValueOf(r.val)
		if err != nil {
			t.Fatalf("ValueOf(%T): %v", r.val, err)
		}
		kv[i] = gguf.KV{Key: r.key, Value: v}
	}
	return kv
}

// tensorBytes returns size deterministic pseudo-random bytes for the tensor named name.
func tensorBytes(t testing.TB, tt testTensor) []byte {
	t.Helper()
	info := gguf.TensorInfo{Dims: tt.dims}
	n := info.Elements()
	size, err := tt.typ.RowBytes(int(n))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(len(tt.name)), uint64(tt.typ)))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sampleFile writes a file with sampleKV (plus extra metadata) and sampleTensors.
func sampleFile(t testing.TB, extra ...gguf.KV) []byte {
	t.Helper()
	w := gguf.NewWriter()
	for _, kv := range append(sampleKV(t), extra...) {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range sampleTensors {
		if err := w.AddTensor(tt.name, tt.typ, tt.dims, tensorBytes(t, tt)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []gguf.KV
		align int
	}{
		{"default alignment", nil, 32},
		{"alignment 64", []gguf.KV{{Key: "general.alignment", Value: mustValue(t, uint32(64))}}, 64},
		{"alignment 1", []gguf.KV{{Key: "general.alignment", Value: mustValue(t, uint32(1))}}, 1},
		{"alignment 4096 as uint64", []gguf.KV{{Key: "general.alignment", Value: mustValue(t, uint64(4096))}}, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := sampleFile(t, tc.extra...)
			f, err := gguf.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Version != 3 || f.Alignment != tc.align {
				t.Errorf("version %d alignment %d, want 3 and %d", f.Version, f.Alignment, tc.align)
			}
			if f.DataOffset%tc.align != 0 {
				t.Errorf("data section at %d, not aligned to %d", f.DataOffset, tc.align)
			}
			want := append(sampleKV(t), tc.extra...)
			if len(f.KV) != len(want) {
				t.Fatalf("got %d metadata entries, want %d", len(f.KV), len(want))
			}
			for i, kv := range want {
				got := f.KV[i]
				if got.Key != kv.Key || !got.Value.Equal(kv.Value) {
					t.Errorf("entry %d: got %s = %v (%v), want %s = %v (%v)", i, got.Key, got.Value, got.Value.Type, kv.Key, kv.Value, kv.Value.Type)
				}
			}
			if len(f.Tensors) != len(sampleTensors) {
				t.Fatalf("got %d tensors, want %d", len(f.Tensors), len(sampleTensors))
			}
			for i, tt := range sampleTensors {
				info, b, err := f.Tensor(tt.name)
				if err != nil {
					t.Fatal(err)
				}
				if info != &f.Tensors[i] {
					t.Errorf("Tensor(%q) is not Tensors[%d]", tt.name, i)
				}
				if info.Type != tt.typ || !slices.Equal(info.Dims, tt.dims) || info.Offset%uint64(tc.align) != 0 {
					t.Errorf("tensor %q: got %v %v at %d, want %v %v aligned to %d", tt.name, info.Type, info.Dims, info.Offset, tt.typ, tt.dims, tc.align)
				}
				if want := tensorBytes(t, tt); !bytes.Equal(b, want) || info.Size != len(want) {
					t.Errorf("tensor %q: data differ (size %d, want %d)", tt.name, info.Size, len(want))
				}
				if cap(b) != len(b) {
					t.Errorf("tensor %q: cap %d > len %d lets append write into the file", tt.name, cap(b), len(b))
				}
			}
		})
	}
}

func mustValue(t testing.TB, x any) gguf.Value {
	t.Helper()
	v, err := gguf.ValueOf(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWriterRejects(t *testing.T) {
	q8 := make([]byte, 34)
	for _, tc := range []struct {
		name string
		do   func(w *gguf.Writer) error
	}{
		{"duplicate key", func(w *gguf.Writer) error {
			if err := w.AddKV("k", uint8(1)); err != nil {
				return nil
			}
			return w.AddKV("k", uint8(2))
		}},
		{"plain int", func(w *gguf.Writer) error { return w.AddKV("k", 1) }},
		{"unsupported type", func(w *gguf.Writer) error { return w.AddKV("k", map[string]int{}) }},
		{"alignment 3", func(w *gguf.Writer) error { return w.AddKV("general.alignment", uint32(3)) }},
		{"alignment 0", func(w *gguf.Writer) error { return w.AddKV("general.alignment", uint32(0)) }},
		{"alignment string", func(w *gguf.Writer) error { return w.AddKV("general.alignment", "32") }},
		{"nested non-array", func(w *gguf.Writer) error { return w.AddKV("k", []gguf.Value{mustValue(t, uint8(1))}) }},
		{"short data", func(w *gguf.Writer) error { return w.AddTensor("t", gguf.TypeQ8_0, []uint64{32}, q8[:33]) }},
		{"long data", func(w *gguf.Writer) error { return w.AddTensor("t", gguf.TypeQ8_0, []uint64{32}, append(q8, 0)) }},
		{"partial block", func(w *gguf.Writer) error { return w.AddTensor("t", gguf.TypeQ8_0, []uint64{31}, q8) }},
		{"unknown type", func(w *gguf.Writer) error { return w.AddTensor("t", gguf.Type(99), []uint64{1}, q8[:1]) }},
		{"five dims", func(w *gguf.Writer) error {
			return w.AddTensor("t", gguf.TypeI8, []uint64{1, 1, 1, 1, 1}, q8[:1])
		}},
		{"duplicate tensor", func(w *gguf.Writer) error {
			if err := w.AddTensor("t", gguf.TypeQ8_0, []uint64{32}, q8); err != nil {
				return nil
			}
			return w.AddTensor("t", gguf.TypeQ8_0, []uint64{32}, q8)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(gguf.NewWriter()); err == nil {
				t.Error("no error")
			}
		})
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

var errWrite = errors.New("write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, errWrite
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterError(t *testing.T) {
	w := gguf.NewWriter()
	if err := w.AddKV("a.str", []string{"a long enough string to matter"}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("t", gguf.TypeF32, []uint64{1 << 15}, make([]byte, 4<<15)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 10, 100, 1 << 16, 100000} {
		if _, err := w.WriteTo(&failWriter{n: n}); !errors.Is(err, errWrite) {
			t.Errorf("failing after %d bytes: got %v, want %v", n, err, errWrite)
		}
	}
}
