package gguf_test

import (
	"bytes"
	"errors"
	"runtime"
	"strconv"
	"testing"

	"squeeze/runtime/gguf"
)

// FuzzParse checks that Parse never panics, that every error wraps one of the package's
// sentinels, and that whatever it accepts is self-consistent: tensor extents lie inside
// the data section, and writing the parsed metadata and tensors back out and parsing again
// gives the same file contents.
func FuzzParse(f *testing.F) {
	f.Add(sampleFile(f))
	f.Add([]byte(header(2, 0, 0)))
	f.Add([]byte(deepArray(3)))
	f.Add([]byte(header(3, 1, 1).kvU32("general.alignment", 8).tensor("w", gguf.TypeQ8_0, 0, 32, 2).data(8, 68)))
	f.Add([]byte(header(3, 2, 0).tensor("a", gguf.TypeQ4_K, 0, 256).tensor("b", gguf.TypeF16, 160, 3, 1, 2).data(32, 172)))
	w := gguf.NewWriter()
	for _, kv := range sampleKV(f)[:6] {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			f.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())

	sentinels := []error{gguf.ErrNotGGUF, gguf.ErrVersion, gguf.ErrTruncated, gguf.ErrCorrupt, gguf.ErrUnknownType}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := gguf.Parse(data)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if file.DataOffset > len(data) || file.DataOffset%file.Alignment != 0 && len(file.Tensors) > 0 {
			t.Fatalf("data section at %d of %d bytes, alignment %d", file.DataOffset, len(data), file.Alignment)
		}
		w := gguf.NewWriter()
		for _, kv := range file.KV {
			if err := w.AddKV(kv.Key, kv.Value); err != nil {
				t.Fatalf("re-adding %q: %v", kv.Key, err)
			}
		}
		for _, ti := range file.Tensors {
			info, b, err := file.Tensor(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != info.Size || info.Offset%uint64(file.Alignment) != 0 {
				t.Fatalf("tensor %q: %d bytes at offset %d, Size %d, alignment %d", ti.Name, len(b), info.Offset, info.Size, file.Alignment)
			}
			if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
				t.Fatalf("re-adding tensor %q: %v", ti.Name, err)
			}
		}
		var out bytes.Buffer
		if _, err := w.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		again, err := gguf.Parse(out.Bytes())
		if err != nil {
			t.Fatalf("parsing the rewritten file: %v", err)
		}
		if len(again.KV) != len(file.KV) || len(again.Tensors) != len(file.Tensors) {
			t.Fatalf("rewritten file has %d keys and %d tensors, want %d and %d", len(again.KV), len(again.Tensors), len(file.KV), len(file.Tensors))
		}
		for i, kv := range file.KV {
			if got := again.KV[i]; got.Key != kv.Key || !got.Value.Equal(kv.Value) {
				t.Fatalf("entry %d: rewritten %q = %v, want %q = %v", i, got.Key, got.Value, kv.Key, kv.Value)
			}
		}
		for _, ti := range file.Tensors {
			_, want, _ := file.Tensor(ti.Name)
			_, got, err := again.Tensor(ti.Name)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("tensor %q differs after rewriting (%v)", ti.Name, err)
			}
		}
	})
}

// TestParseAllocBound feeds Parse hostile files built to maximize allocation per input
// byte and checks that it allocates at most a small multiple of the file size.
func TestParseAllocBound(t *testing.T) {
	const n = 1 << 16
	emptyArrays := header(3, 0, 1).str("k").u32(9).u32(9).u64(n)
	for range n {
		emptyArrays = emptyArrays.u32(0).u64(0)
	}
	emptyStrings := header(3, 0, 1).str("k").u32(9).u32(8).u64(n)
	for range n {
		emptyStrings = emptyStrings.u64(0)
	}
	manyKeys := header(3, 0, n)
	for i := range n {
		manyKeys = manyKeys.str(strconv.Itoa(i)).u32(0).u8s(0)
	}
	manyTensors := header(3, n, 0)
	for i := range n {
		manyTensors = manyTensors.tensor(strconv.Itoa(i), gguf.TypeF32, 0)
	}
	manyTensors = manyTensors.data(32, 4)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"nested empty arrays", emptyArrays},
		{"empty strings", emptyStrings},
		{"many keys", manyKeys},
		{"many tensors", manyTensors},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, err := gguf.Parse(tc.data)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			grew := after.TotalAlloc - before.TotalAlloc
			ratio := float64(grew) / float64(len(tc.data))
			t.Logf("%d bytes in, %d bytes allocated (%.1fx), %d keys, %d tensors", len(tc.data), grew, ratio, len(f.KV), len(f.Tensors))
			if ratio > 16 {
				t.Errorf("allocated %.1f bytes per input byte, want at most 16", ratio)
			}
		})
	}
}
