package gguf_test

import (
	"bytes"
	"fmt"
	"log"

	"squeeze/runtime/gguf"
)

// Write a tiny model file and read it back.
func Example() {
	w := gguf.NewWriter()
	for _, kv := range []struct {
		key string
		val any
	}{
		{"general.architecture", "llama"},
		{"llama.block_count", uint32(2)},
		{"tokenizer.ggml.tokens", []string{"<s>", "</s>", "a"}},
	} {
		if err := w.AddKV(kv.key, kv.val); err != nil {
			log.Fatal(err)
		}
	}
	// Four rows of eight float32 zeros; dims are innermost first.
	if err := w.AddTensor("token_embd.weight", gguf.TypeF32, []uint64{8, 4}, make([]byte, 8*4*4)); err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		log.Fatal(err)
	}

	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	arch, _ := f.Architecture()
	blocks, _ := f.Uint("llama.block_count")
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	info, data, _ := f.Tensor("token_embd.weight")
	fmt.Println(arch, blocks, tokens)
	fmt.Println(info.Name, info.Type, info.Dims, info.Rows(), "rows,", len(data), "bytes")
	_, err = f.Float("llama.block_count")
	fmt.Println(err)
	// Output:
	// llama 2 [<s> </s> a]
	// token_embd.weight F32 [8 4] 4 rows, 128 bytes
	// gguf: file is corrupt: metadata key "llama.block_count" is uint32 2, want a float
}
