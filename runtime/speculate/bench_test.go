package speculate

import (
	"fmt"
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// BenchmarkStepCost times one forward pass of k tokens (a verification pass: the
// pending token and k-1 drafted ones) over a dense cache holding 4096 tokens of dev.txt,
// with gocode-22m, then rolls the cache back. exact is the verification pass
// (model.Options.Exact, every token as decoding computes it); batched is the plain
// batched pass, for comparison. The metric x-step is the time over that of k = 1.
func BenchmarkStepCost(b *testing.B) {
	m, tok := gocode(b)
	const depth = 4096
	tokens := devTokens(b, tok)[:depth+8]
	pool := kernels.NewPool(0)
	defer pool.Close()
	c, err := m.NewCache(depth+8, model.CacheF16)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Forward(pool, c, tokens[:depth], nil, nil); err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, 8*m.Config.Vocab)
	for _, exact := range []bool{true, false} {
		name := "batched"
		if exact {
			name = "exact"
		}
		var one float64 // ns of k = 1
		for k := 1; k <= 8; k++ {
			b.Run(fmt.Sprintf("%s/k=%d", name, k), func(b *testing.B) {
				opt := &model.Options{AllLogits: true, Exact: exact}
				for b.Loop() {
					if err := m.Forward(pool, c, tokens[depth:depth+k], logits, opt); err != nil {
						b.Fatal(err)
					}
					if err := c.Truncate(depth); err != nil {
						b.Fatal(err)
					}
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if k == 1 {
					one = ns
				}
				b.ReportMetric(ns/one, "x-step")
			})
		}
	}
}
