// Package tokenizer turns text into token ids and back for the models squeeze runs, built
// from the tokenizer description a GGUF file carries in its tokenizer.ggml.* metadata.
//
// Two tokenizer models are supported, mirroring llama.cpp's llama-vocab.cpp:
//
//   - "llama": SentencePiece BPE with scores. Spaces become U+2581 ("▁"), a "▁" is
//     prefixed to every run of plain text that starts the input or follows a special token,
//     and the adjacent pair whose merged text is the highest-scoring vocabulary entry is
//     merged until no pair is in the vocabulary. Characters left outside the vocabulary
//     fall back to <0xNN> byte tokens, or to the unknown token when there are none.
//   - "gpt2": byte-level BPE. The text is split into words by a pre-tokenizer (the regular
//     expressions of GPT-2, Llama 3 ("llama-bpe") or Qwen2, written here as hand-made
//     scanners because Go's regexp has no lookahead), each byte of a word is mapped to a
//     printable rune by GPT-2's byte-to-unicode table, and adjacent pairs are merged by
//     merge rank (lowest first, leftmost on ties).
//
// Special tokens (control, user-defined and unknown types) are matched in the input text
// before the models above see it, longest first, as llama.cpp does: user-defined tokens
// always, control and unknown tokens only when the caller asks for special parsing.
//
// Decoding concatenates the byte pieces of the tokens, dropping control tokens and, for
// "llama", the "▁" prefix the encoder added. Decode(Encode(x)) == x for every byte string x, valid
// UTF-8 or not, except that with "llama" a literal "▁" in x comes back as a space (and
// bytes need <0xNN> tokens).
// Decoder decodes generated tokens one at a time, continuing a prompt, and never splits
// a UTF-8 sequence.
//
// A Tokenizer is immutable after New and safe for concurrent use.
package tokenizer
