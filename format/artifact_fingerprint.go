package format

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math"
	"os"

	"squeeze/runtime/gguf"
	"squeeze/runtime/tokenizer"
)

// Fingerprint sampling: a tensor of at most fullTensor bytes is hashed whole; a larger one
// through sampleCount chunks of sampleBytes spread evenly over it (the first chunk at its
// start, the last at its end).
const (
	fullTensor  = 256 << 10
	sampleCount = 16
	sampleBytes = 16 << 10
)

// ModelFingerprint identifies a model file: the hex SHA-256 of a domain string, the file's
// GGUF header (every byte before the tensor data: version, metadata, tensor names, shapes,
// types and offsets), and each tensor's data in file order: whole for tensors of up to
// 256 KiB, otherwise 16 chunks of 16 KiB spread evenly over it. Any change to metadata,
// shapes or types, and any retraining or requantization (which changes every tensor),
// changes it, while the cost stays bounded for large models (at most 256 KiB per tensor:
// about 25 MB of hashing for a 44 MB model, well under a second). f is path opened with
// gguf.Open.
func ModelFingerprint(path string, f *gguf.File) (string, error) {
	h := sha256.New()
	io.WriteString(h, "squeeze model fingerprint v1\x00")
	file, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	defer file.Close()
	if _, err := io.CopyN(h, file, int64(f.DataOffset)); err != nil {
		return "", fmt.Errorf("fingerprint %s: read header: %w", path, err)
	}
	for i := range f.Tensors {
		_, data, err := f.Tensor(f.Tensors[i].Name)
		if err != nil {
			return "", fmt.Errorf("fingerprint %s: %w", path, err)
		}
		hashTensor(h, data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashTensor adds a tensor's length and its data or samples of it to h.
func hashTensor(h hash.Hash, data []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(data)))
	h.Write(n[:])
	if len(data) <= fullTensor {
		h.Write(data)
		return
	}
	step := (len(data) - sampleBytes) / (sampleCount - 1)
	for i := range sampleCount {
		off := i * step
		if i == sampleCount-1 {
			off = len(data) - sampleBytes
		}
		h.Write(data[off : off+sampleBytes])
	}
}

// TokenizerFingerprint identifies a tokenizer: the hex SHA-256 of its vocabulary as
// tokenizer.ReadVocab gives it (model, pre-tokenizer, every token's text, score and type,
// the merges, the special token ids and the BOS/EOS/space-prefix flags), each field length-
// or count-prefixed so that no two vocabularies hash the same bytes.
func TokenizerFingerprint(v tokenizer.Vocab) string {
	h := sha256.New()
	var e Encoder
	e.Text("squeeze tokenizer fingerprint v1")
	e.Text(v.Model)
	e.Text(v.Pre)
	e.Uvarint(uint64(len(v.Tokens)))
	for _, t := range v.Tokens {
		e.Text(t)
	}
	e.Uvarint(uint64(len(v.Scores)))
	for _, s := range v.Scores {
		e.Uint32(math.Float32bits(s))
	}
	e.Uvarint(uint64(len(v.Types)))
	for _, t := range v.Types {
		e.Varint(int64(t))
	}
	e.Uvarint(uint64(len(v.Merges)))
	for _, m := range v.Merges {
		e.Text(m)
	}
	for _, id := range []int32{v.BOS, v.EOS, v.UNK, v.PAD, v.EOT} {
		e.Varint(int64(id))
	}
	e.Bool(v.AddBOS)
	e.Bool(v.AddEOS)
	e.Bool(v.NoSpacePrefix)
	h.Write(e.Bytes())
	return hex.EncodeToString(h.Sum(nil))
}
