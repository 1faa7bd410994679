package model

import (
	"context"
	"errors"
	"fmt"
	"math"

	"squeeze/runtime/kernels"
)

// PerplexityOptions configure Perplexity. The zero value is not usable: set Context.
type PerplexityOptions struct {
	// Context is the chunk length n_ctx (llama-perplexity's -c; 2048 for the reference
	// values of the shared models).
	Context int
	// Chunks, if positive, scores only the first Chunks chunks.
	Chunks int
	// AddBOS replaces the first token of every chunk with BOS, as llama-perplexity does
	// for vocabularies that add a BOS token.
	AddBOS bool
	BOS    int32
	// Cache is the KV cache type (llama.cpp's default is f16).
	Cache CacheType
	// Progress, if set, is called after each chunk with the chunks done and the total.
	Progress func(done, total int)
}

// PerplexityResult is what Perplexity measured.
type PerplexityResult struct {
	// PPL is exp(NLL).
	PPL float64
	// NLL is the mean negative log-likelihood per scored token, in nats.
	NLL float64
	// StdErr is the standard error of PPL as llama-perplexity prints it (the spread of
	// the per-token NLL, scaled by PPL).
	StdErr float64
	// Tokens is the number of tokens scored; Chunks the number of chunks.
	Tokens, Chunks int
}

// Perplexity measures m on tokens with llama-perplexity's protocol: tokens (the whole
// text, tokenized with BOS first) is cut into consecutive chunks of opt.Context tokens
// (a shorter tail is dropped), each chunk runs from an empty cache, and only the second
// half of each chunk is scored: every token at chunk positions Context/2+1 .. Context-1,
// predicted from everything before it in the chunk. It returns ctx's error if ctx is
// cancelled between passes.
func Perplexity(ctx context.Context, m *Model, p *kernels.Pool, tokens []int32, opt PerplexityOptions) (PerplexityResult, error) {
	var res PerplexityResult
	nCtx := opt.Context
	if nCtx < 4 {
		return res, fmt.Errorf("model: perplexity context of %d tokens, want at least 4", nCtx)
	}
	chunks := len(tokens) / nCtx
	if opt.Chunks > 0 {
		chunks = min(chunks, opt.Chunks)
	}
	if chunks == 0 {
		return res, fmt.Errorf("model: perplexity needs at least %d tokens (one chunk), have %d", nCtx, len(tokens))
	}
	c, err := m.NewCache(nCtx, opt.Cache)
	if err != nil {
		return res, err
	}
	vocab := m.Config.Vocab
	first := nCtx / 2
	step := min(MaxBatch, nCtx-first)
	logits := make([]float32, step*vocab)
	lp := make([]float64, step) // log-probabilities of a pass's targets
	chunk := make([]int32, nCtx)
	var nll, nll2 float64
	count := 0
	for ci := range chunks {
		start := ci * nCtx
		copy(chunk, tokens[start:start+nCtx])
		if opt.AddBOS {
			chunk[0] = opt.BOS
		}
		c.Reset()
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := m.Forward(p, c, chunk[:first], nil, nil); err != nil {
			return res, fmt.Errorf("model: perplexity chunk %d: %w", ci, err)
		}
		for at := first; at < nCtx; at += step {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			n := min(step, nCtx-at)
			if err := m.Forward(p, c, chunk[at:at+n], logits[:n*vocab], &Options{AllLogits: true}); err != nil {
				return res, fmt.Errorf("model: perplexity chunk %d: %w", ci, err)
			}
			// Score the tokens in parallel, in float64 as llama-perplexity does; the last
			// token of the chunk has no target.
			scored := min(n, nCtx-1-at)
			p.For(scored, 16, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					lp[i] = logSoftmaxAt(logits[i*vocab:(i+1)*vocab], chunk[at+i+1])
				}
			})
			for _, v := range lp[:scored] {
				nll -= v
				nll2 += v * v
			}
			count += scored
		}
		if opt.Progress != nil {
			opt.Progress(ci+1, chunks)
		}
	}
	if count == 0 {
		return res, errors.New("model: perplexity scored no tokens")
	}
	res.NLL = nll / float64(count)
	res.PPL = math.Exp(res.NLL)
	if v := nll2/float64(count) - res.NLL*res.NLL; v > 0 && count > 1 {
		res.StdErr = math.Sqrt(v/float64(count-1)) * res.PPL
	}
	res.Tokens, res.Chunks = count, chunks
	return res, nil
}

// logSoftmaxAt returns log softmax(logits)[tok], summing in float64.
func logSoftmaxAt(logits []float32, tok int32) float64 {
	m := logits[0]
	for _, v := range logits[1:] {
		m = max(m, v)
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v - m))
	}
	return float64(logits[tok]-m) - math.Log(sum)
}
