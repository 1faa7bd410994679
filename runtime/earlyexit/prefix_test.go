package earlyexit

import (
	"fmt"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/speculate"
)

// TestPipelineWithPrefix checks the pipeline after a fixed context that the cache does
// not hold (positions shifted by the prefix, every layer attending to it), with and
// without drafts: the tokens are plain greedy decoding's with the same prefix.
func TestPipelineWithPrefix(t *testing.T) {
	s := modeltest.Spec{Layers: 6, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 64, Context: 512, Weights: gguf.TypeF16, Seed: 9}
	m, _ := sharedModel(t, s, 2)
	p := kernels.NewPool(2)
	defer p.Close()
	pc, err := m.NewCache(80, model.CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(p, pc, modeltest.Tokens(80, s.Vocab, 3), nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg := &m.Config
	prefix := modeltest.NewDensePrefix(t, pc, cfg.Layers, cfg.Heads, cfg.KVHeads, cfg.HeadDim)
	prompt := modeltest.Tokens(12, s.Vocab, 4)
	want := plainGreedy(t, m, p, prefix, prompt, 40)
	for _, o := range []PipelineOptions{{}, {Vocab: prompt}, {Drafter: speculate.NewNGram(nil, 1, 3)}} {
		t.Run(fmt.Sprintf("vocab=%d/draft=%v", len(o.Vocab), o.Drafter != nil), func(t *testing.T) {
			got, _ := pipelined(t, m, p, prefix, prompt, 40, o)
			if !slices.Equal(got, want) {
				t.Fatalf("pipelined %v\nplain     %v", got, want)
			}
		})
	}
}
