package gguf_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/testfiles"
)

// Expected facts below come from ../shared/models/README.md: architecture, layer counts,
// widths, vocabulary sizes, tokenizer kinds, and the tensor types it says each file uses.
func TestModels(t *testing.T) {
	for _, tc := range []struct {
		file      string
		blocks    uint64
		embd      uint64
		vocab     int
		tensors   int
		types     []gguf.Type
		tokenizer string
	}{
		{"gocode-22m/gocode-22m.gguf", 10, 384, 8192, 93, []gguf.Type{gguf.TypeF16, gguf.TypeF32}, "gpt2"},
		{"gocode-22m/gocode-22m-q8_0.gguf", 10, 384, 8192, 93, []gguf.Type{gguf.TypeQ8_0, gguf.TypeF32}, "gpt2"},
		{"gocode-22m/gocode-22m-q4_k_m.gguf", 10, 384, 8192, 93,
			[]gguf.Type{gguf.TypeQ4_K, gguf.TypeQ6_K, gguf.TypeQ5_0, gguf.TypeQ8_0, gguf.TypeF32}, "gpt2"},
		{"gocode-shared/gocode-shared.gguf", 12, 384, 8192, 111, []gguf.Type{gguf.TypeF16, gguf.TypeF32}, "gpt2"},
		{"gocode-demo/gocode-demo.gguf", 6, 256, 4096, 57, []gguf.Type{gguf.TypeQ8_0, gguf.TypeF32}, "gpt2"},
		// 5 blocks of 9 tensors, token_embd and output_norm; no output.weight (tied).
		{"stories260k/stories260k.gguf", 5, 64, 512, 47, []gguf.Type{gguf.TypeF32}, "llama"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := gguf.Open(testfiles.Shared(t, "models", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if arch, err := f.Architecture(); err != nil || arch != "llama" {
				t.Errorf("Architecture() = %q, %v; want llama", arch, err)
			}
			if n, err := f.Uint("llama.block_count"); err != nil || n != tc.blocks {
				t.Errorf("block_count = %d, %v; want %d", n, err, tc.blocks)
			}
			if n, err := f.Uint("llama.embedding_length"); err != nil || n != tc.embd {
				t.Errorf("embedding_length = %d, %v; want %d", n, err, tc.embd)
			}
			if eps, err := f.Float("llama.attention.layer_norm_rms_epsilon"); err != nil || float32(eps) != 1e-5 {
				t.Errorf("rms epsilon = %g, %v; want 1e-5", eps, err)
			}
			if m, err := f.String("tokenizer.ggml.model"); err != nil || m != tc.tokenizer {
				t.Errorf("tokenizer model = %q, %v; want %q", m, err, tc.tokenizer)
			}
			if toks, err := f.Strings("tokenizer.ggml.tokens"); err != nil || len(toks) != tc.vocab {
				t.Errorf("%d tokens, %v; want %d", len(toks), err, tc.vocab)
			}
			if len(f.Tensors) != tc.tensors {
				t.Errorf("%d tensors, want %d", len(f.Tensors), tc.tensors)
			}
			info, data, err := f.Tensor("token_embd.weight")
			if err != nil {
				t.Fatal(err)
			}
			if want := []uint64{tc.embd, uint64(tc.vocab)}; !slices.Equal(info.Dims, want) {
				t.Errorf("token_embd.weight dims %v, want %v", info.Dims, want)
			}
			if len(data) != info.Size {
				t.Errorf("token_embd.weight: %d bytes, Size %d", len(data), info.Size)
			}
			var types []gguf.Type
			end := uint64(0)
			for _, ti := range f.Tensors {
				if !slices.Contains(types, ti.Type) {
					types = append(types, ti.Type)
				}
				end = max(end, ti.Offset+uint64(ti.Size))
			}
			slices.Sort(types)
			want := slices.Sorted(slices.Values(tc.types))
			if !slices.Equal(types, want) {
				t.Errorf("tensor types %v, want %v", types, want)
			}
			// llama.cpp writes tensors back to back: the last one ends the file.
			st, err := os.Stat(testfiles.Shared(t, "models", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := uint64(f.DataOffset) + end; got != uint64(st.Size()) {
				t.Errorf("tensors end at byte %d, file has %d", got, st.Size())
			}
		})
	}
}

func TestModelLookups(t *testing.T) {
	f, err := gguf.Open(testfiles.Shared(t, "models", "stories260k/stories260k.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scores, err := f.Float32s("tokenizer.ggml.scores")
	if err != nil || len(scores) != 512 {
		t.Errorf("scores: %d, %v; want 512", len(scores), err)
	}
	types, err := f.Int32s("tokenizer.ggml.token_type")
	if err != nil || len(types) != 512 {
		t.Errorf("token types: %d, %v; want 512", len(types), err)
	}
	if _, _, err := f.Tensor("output.weight"); !errors.Is(err, gguf.ErrNotFound) {
		t.Errorf("Tensor(output.weight) on a tied model: %v, want ErrNotFound", err)
	}
}

// TestSharedBlocks checks gocode-shared's sharing, as its README describes it: metadata
// squeeze.block_share = 4, and layer i's tensors byte-identical to layer i mod 4's.
func TestSharedBlocks(t *testing.T) {
	f, err := gguf.Open(testfiles.Shared(t, "models", "gocode-shared/gocode-shared.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	share, err := f.Uint("squeeze.block_share")
	if err != nil || share != 4 {
		t.Fatalf("squeeze.block_share = %d, %v; want 4", share, err)
	}
	for _, name := range []string{"attn_q.weight", "attn_norm.weight", "ffn_down.weight"} {
		for layer := 4; layer < 12; layer++ {
			_, got, err := f.Tensor(fmt.Sprintf("blk.%d.%s", layer, name))
			if err != nil {
				t.Fatal(err)
			}
			_, want, err := f.Tensor(fmt.Sprintf("blk.%d.%s", layer%4, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("blk.%d.%s differs from blk.%d.%s", layer, name, layer%4, name)
			}
		}
	}
}

// TestOpenMapsData checks that Open keeps tensor data outside the Go heap (in the
// mapping, or in huge pages: mmap.Huge): the heap grows by the metadata (the
// vocabulary, about 1 MB), not by the 44 MB of weights, even after every tensor has been
// read.
func TestOpenMapsData(t *testing.T) {
	path := testfiles.Shared(t, "models", "gocode-22m/gocode-22m.gguf")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sum byte
	for _, ti := range f.Tensors {
		_, data, err := f.Tensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(data); i += 4096 {
			sum += data[i]
		}
	}
	runtime.ReadMemStats(&after)
	grew := int64(after.TotalAlloc - before.TotalAlloc)
	t.Logf("file %d bytes, heap allocated during Open and reads: %d bytes (checksum %d)", st.Size(), grew, sum)
	if limit := st.Size() / 10; grew > limit {
		t.Errorf("Open allocated %d bytes on the heap for a %d-byte file, want < %d", grew, st.Size(), limit)
	}
}

// TestOpenMapped checks that OpenMapped and Open (which copies the 44 MB model into
// huge pages where the system offers them) give the same tensors, byte for byte.
func TestOpenMapped(t *testing.T) {
	path := testfiles.Shared(t, "models", "gocode-22m/gocode-22m.gguf")
	huge, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	mapped, err := gguf.OpenMapped(path)
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	if len(huge.Tensors) != len(mapped.Tensors) {
		t.Fatalf("%d tensors against %d", len(huge.Tensors), len(mapped.Tensors))
	}
	for _, ti := range huge.Tensors {
		_, a, err := huge.Tensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		_, b, err := mapped.Tensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("tensor %s differs", ti.Name)
		}
	}
}

// BenchmarkOpen measures opening a model: mapping it and parsing its header, whose
// vocabulary and merges are most of the work.
func BenchmarkOpen(b *testing.B) {
	path := testfiles.Shared(b, "models", "gocode-22m/gocode-22m.gguf")
	b.ReportAllocs()
	for b.Loop() {
		f, err := gguf.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
