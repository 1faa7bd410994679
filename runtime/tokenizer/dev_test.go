package tokenizer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// idsHash returns the SHA-256 of ids written as little-endian int32s.
func idsHash(ids []int32) string {
	b := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint32(b, uint32(id))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestDevRoundTrip checks decode(encode(x)) == x for every document of
// ../shared/eval/dev.txt and for the whole file at once, and compares the whole file's
// ids with an independent implementation: a Python script applying GPT-2's regular
// expression (with the "regex" module, which has lookahead) and the merges of the
// model's tokenizer.json, which gave the counts and hashes below (no BOS).
func TestDevRoundTrip(t *testing.T) {
	for _, c := range []struct {
		model string
		count int
		hash  string
	}{
		{"gocode-22m/gocode-22m.gguf", 343373, "fc13200eabff310ceb9a41b28c7ba178d5369a7fe293d8dada87fdd6b39a25d6"},
		{"gocode-demo/gocode-demo.gguf", 365044, "4c8db0a59b82139895e6decf33adacd2b7b398efc3fe85ac817405f5a0b4bc91"},
	} {
		t.Run(c.model, func(t *testing.T) {
			tok := ggufTokenizer(t, c.model)
			text, docs := devDocuments(t)
			if len(docs) < 100 {
				t.Fatalf("dev.txt split into %d documents, want over 100", len(docs))
			}
			for i, doc := range docs {
				ids := tok.Encode(doc, true)
				if back := tok.Decode(ids); back != doc {
					t.Errorf("document %d: decode(encode(doc)) differs from doc (%d bytes, got %d)", i, len(doc), len(back))
				}
			}
			start := time.Now()
			ids := tok.Encode(text, false)
			t.Logf("encoded %d bytes into %d tokens in %v", len(text), len(ids), time.Since(start))
			if back := tok.Decode(ids); back != text {
				t.Errorf("decode(encode(dev.txt)) differs from dev.txt")
			}
			if len(ids) != c.count || idsHash(ids) != c.hash {
				t.Errorf("dev.txt: %d tokens with hash %s, want %d tokens with hash %s", len(ids), idsHash(ids), c.count, c.hash)
			}
		})
	}
}

// TestConcurrentEncode encodes the documents of dev.txt from several goroutines at once
// (the word cache is shared) and checks the results against a sequential pass.
func TestConcurrentEncode(t *testing.T) {
	tok := ggufTokenizer(t, "gocode-demo/gocode-demo.gguf")
	_, docs := devDocuments(t)
	if testing.Short() {
		docs = docs[:20]
	}
	want := make([][]int32, len(docs))
	for i, doc := range docs {
		want[i] = tok.Encode(doc, true)
	}
	tok.bpe.mu.Lock()
	clear(tok.bpe.cache)
	tok.bpe.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan string, 4*len(docs))
	for g := range 4 {
		wg.Go(func() {
			for i := range docs {
				j := (i + g*len(docs)/4) % len(docs)
				if got := tok.Encode(docs[j], true); !slices.Equal(got, want[j]) {
					errs <- fmt.Sprintf("goroutine %d, document %d: ids differ from the sequential pass", g, j)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestLongWords encodes words far longer than the cache keeps (one pre-tokenizer word of
// 64 KiB) and checks the round trip; the merge queue keeps this at O(n log n).
func TestLongWords(t *testing.T) {
	tok := ggufTokenizer(t, "gocode-demo/gocode-demo.gguf")
	spm := ggufTokenizer(t, "stories260k/stories260k.gguf")
	for _, text := range []string{
		strings.Repeat(" ", 1<<16),
		strings.Repeat("=", 1<<16),
		strings.Repeat("ab", 1<<15),
		strings.Repeat("\t", 1<<16) + "x",
	} {
		start := time.Now()
		for _, tk := range []*Tokenizer{tok, spm} {
			if got := tk.Decode(tk.Encode(text, true)); got != text {
				t.Errorf("%s: round trip of %d bytes of %q failed", tk.Model(), len(text), text[:2])
			}
		}
		t.Logf("%d bytes of %q: %v", len(text), text[:2], time.Since(start))
	}
}
