package model

import (
	"context"
	"errors"
	"flag"
	"math"
	"os"
	"testing"
	"time"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/testfiles"
	"squeeze/runtime/tokenizer"
)

var pplChunks = flag.Int("ppl.chunks", 0, "score only the first N chunks in TestPerplexityGocode (0: all, and check against llama.cpp)")

// TestPerplexityGocode measures gocode-22m on the held-out dev.txt with llama-perplexity's
// protocol (n_ctx 2048, f16 KV cache) and checks the F16, Q8_0 and Q4_K_M files against
// llama.cpp's values (../shared/models/README.md) within 0.5%. It takes several minutes
// per file on 2 threads, beyond go test's default 10-minute limit:
//
//	go test ./runtime/model -run PerplexityGocode -v -timeout 60m
//
// -args -ppl.chunks=N runs a quick partial measurement instead (no check).
func TestPerplexityGocode(t *testing.T) {
	if testing.Short() {
		t.Skip("perplexity over dev.txt takes minutes per file; run without -short")
	}
	text, err := os.ReadFile(testfiles.Shared(t, "eval", "dev.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		file string
		want float64 // llama.cpp c392e50, 2 threads, n_ctx 2048, f16 KV cache
	}{
		{"gocode-22m.gguf", 6.9190},
		{"gocode-22m-q8_0.gguf", 6.9224},
		{"gocode-22m-q4_k_m.gguf", 6.9421},
	}
	p := kernels.NewPool(2)
	defer p.Close()
	var tokens []int32
	for _, tf := range files {
		t.Run(tf.file, func(t *testing.T) {
			f, err := gguf.Open(testfiles.Shared(t, "models", "gocode-22m", tf.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := tokenizer.FromGGUF(f)
			if err != nil {
				t.Fatal(err)
			}
			if tokens == nil {
				tokens = tok.Encode(string(text), true)
				t.Logf("dev.txt: %d tokens", len(tokens))
			}
			start := time.Now()
			res, err := Perplexity(context.Background(), m, p, tokens, PerplexityOptions{
				Context: 2048, Chunks: *pplChunks, AddBOS: tok.AddBOS(), BOS: tok.BOS(), Cache: CacheF16,
			})
			if err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			t.Logf("%s: PPL %.4f +/- %.5f over %d chunks (%d tokens scored) in %v (%.0f tokens/s); llama.cpp %.4f, ratio %.5f",
				tf.file, res.PPL, res.StdErr, res.Chunks, res.Tokens, el.Round(time.Second),
				float64(res.Chunks*2048)/el.Seconds(), tf.want, res.PPL/tf.want)
			if *pplChunks == 0 && math.Abs(res.PPL/tf.want-1) > 0.005 {
				t.Errorf("perplexity %.4f is more than 0.5%% from llama.cpp's %.4f", res.PPL, tf.want)
			}
		})
	}
}

// TestPerplexityProtocol checks Perplexity against a direct computation on a synthetic
// model: chunks start from an empty cache with BOS first, and only the second half of each
// chunk is scored.
func TestPerplexityProtocol(t *testing.T) {
	m, err := Load(modeltest.Open(t, modeltest.Spec{Seed: 21}))
	if err != nil {
		t.Fatal(err)
	}
	p := kernels.NewPool(2)
	defer p.Close()
	const nCtx, bos = 16, 1
	tokens := randomTokens(3*nCtx+5, m.Config.Vocab, 4)
	vocab := m.Config.Vocab
	var nll float64
	count := 0
	for ch := range 3 {
		chunk := append([]int32(nil), tokens[ch*nCtx:(ch+1)*nCtx]...)
		chunk[0] = bos
		c, _ := m.NewCache(nCtx, CacheF32)
		logits := make([]float32, nCtx*vocab)
		if err := m.Forward(p, c, chunk, logits, &Options{AllLogits: true}); err != nil {
			t.Fatal(err)
		}
		for pos := nCtx / 2; pos < nCtx-1; pos++ {
			nll -= logSoftmaxAt(logits[pos*vocab:(pos+1)*vocab], chunk[pos+1])
			count++
		}
	}
	want := math.Exp(nll / float64(count))
	var progress []int
	res, err := Perplexity(context.Background(), m, p, tokens, PerplexityOptions{
		Context: nCtx, AddBOS: true, BOS: bos, Cache: CacheF32,
		Progress: func(done, total int) {
			if total != 3 {
				t.Errorf("progress total %d, want 3", total)
			}
			progress = append(progress, done)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != 3 || res.Tokens != count {
		t.Errorf("scored %d chunks and %d tokens, want 3 and %d", res.Chunks, res.Tokens, count)
	}
	if math.Abs(res.PPL/want-1) > 1e-5 {
		t.Errorf("PPL %v, want %v", res.PPL, want)
	}
	if len(progress) != 3 || progress[2] != 3 {
		t.Errorf("progress calls %v", progress)
	}
	if _, err := Perplexity(context.Background(), m, p, tokens[:nCtx-1], PerplexityOptions{Context: nCtx}); err == nil {
		t.Error("Perplexity of less than one chunk succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Perplexity(ctx, m, p, tokens, PerplexityOptions{Context: nCtx}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Perplexity: %v, want context.Canceled", err)
	}
}
