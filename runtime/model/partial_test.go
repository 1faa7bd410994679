package model

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// sharedModel loads the model s describes with every layer's tensors replaced by those
// of layer i mod period: a parameter-shared decoder as gocode-shared stores one.
func sharedModel(t *testing.T, s modeltest.Spec, period int) *Model {
	t.Helper()
	s.BlockShare = period
	return loadSpec(t, s)
}

var partialSpec = modeltest.Spec{Layers: 6, Dim: 64, FFN: 96, Heads: 4, KVHeads: 2, Vocab: 300, Context: 256, Weights: gguf.TypeF16, Seed: 3}

// TestBlockPeriod checks that byte-identical layers are found, and only they.
func TestBlockPeriod(t *testing.T) {
	for _, period := range []int{1, 2, 3} {
		if got := sharedModel(t, partialSpec, period).BlockPeriod(); got != period {
			t.Errorf("shared every %d layers: BlockPeriod %d", period, got)
		}
	}
	if got := loadSpec(t, partialSpec).BlockPeriod(); got != partialSpec.Layers {
		t.Errorf("distinct layers: BlockPeriod %d, want %d", got, partialSpec.Layers)
	}
}

// TestForwardLayersMatchesForward checks that running the layers in parts gives Forward's
// hidden states and logits bit for bit: the part up to each depth equals what Observe
// sees after that layer, and the rest of the depth from there (then SetLen and Head)
// equals Forward's logits and leaves the cache as Forward does.
func TestForwardLayersMatchesForward(t *testing.T) {
	m := loadSpec(t, partialSpec)
	cfg := &m.Config
	dim := cfg.Dim
	for _, threads := range []int{1, 3} {
		for _, n := range []int{1, 4} {
			t.Run(fmt.Sprintf("threads=%d/n=%d", threads, n), func(t *testing.T) {
				p := kernels.NewPool(threads)
				defer p.Close()
				prompt := randomTokens(40, cfg.Vocab, 1)
				tokens := randomTokens(n, cfg.Vocab, 2)
				next := randomTokens(1, cfg.Vocab, 3)

				ref, err := m.NewCache(64, CacheF16)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Forward(p, ref, prompt, nil, nil); err != nil {
					t.Fatal(err)
				}
				hidden := make([][]float32, cfg.Layers)
				obs := func(s *LayerState) { hidden[s.Layer] = append([]float32(nil), s.Hidden...) }
				want := make([]float32, n*cfg.Vocab)
				if err := m.Forward(p, ref, tokens, want, &Options{AllLogits: true, Observe: obs}); err != nil {
					t.Fatal(err)
				}
				wantNext := make([]float32, cfg.Vocab)
				if err := m.Forward(p, ref, next, wantNext, nil); err != nil {
					t.Fatal(err)
				}

				for cut := 1; cut <= cfg.Layers; cut++ {
					c, err := m.NewCache(64, CacheF16)
					if err != nil {
						t.Fatal(err)
					}
					if err := m.Forward(p, c, prompt, nil, nil); err != nil {
						t.Fatal(err)
					}
					x := make([]float32, n*dim)
					if err := m.Embed(x, tokens); err != nil {
						t.Fatal(err)
					}
					pos := c.Len()
					if err := m.ForwardLayers(p, c, x, []Stage{{Layer: 0, Pos: pos, Rows: n}}, cut, nil); err != nil {
						t.Fatal(err)
					}
					if c.Len() != pos {
						t.Fatalf("ForwardLayers moved Len from %d to %d", pos, c.Len())
					}
					if d := countDiff(x, hidden[cut-1]); d != 0 {
						t.Fatalf("layers 0..%d: %d of %d hidden values differ from Forward's", cut-1, d, len(x))
					}
					if cut < cfg.Layers {
						if err := m.ForwardLayers(p, c, x, []Stage{{Layer: cut, Pos: pos, Rows: n}}, cfg.Layers-cut, nil); err != nil {
							t.Fatal(err)
						}
					}
					if err := c.SetLen(pos + n); err != nil {
						t.Fatal(err)
					}
					got := make([]float32, n*cfg.Vocab)
					m.Head(p, x, n, got)
					if d := countDiff(got, want); d != 0 {
						t.Fatalf("cut at %d: %d of %d logits differ from Forward's", cut, d, len(got))
					}
					gotNext := make([]float32, cfg.Vocab)
					if err := m.Forward(p, c, next, gotNext, nil); err != nil {
						t.Fatal(err)
					}
					if d := countDiff(gotNext, wantNext); d != 0 {
						t.Fatalf("cut at %d: the next token's logits differ (%d values): the cache is not Forward's", cut, d)
					}
				}
			})
		}
	}
}

// TestForwardLayersMixedDepths checks the depth-mixed pass on a parameter-shared model:
// stages at different depths run through the shared weights together, and with
// Options.Exact each stage gets bitwise what it gets run alone; a prefix is attended to
// as in Forward.
func TestForwardLayersMixedDepths(t *testing.T) {
	const period = 2
	m := sharedModel(t, partialSpec, period)
	cfg := &m.Config
	dim := cfg.Dim
	p := kernels.NewPool(2)
	defer p.Close()
	for _, withPrefix := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefix=%v", withPrefix), func(t *testing.T) {
			opt := &Options{Exact: true}
			if withPrefix {
				pc, err := m.NewCache(50, CacheF32)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Forward(p, pc, randomTokens(50, cfg.Vocab, 8), nil, nil); err != nil {
					t.Fatal(err)
				}
				opt.Prefix = newDensePrefix(t, pc)
			}
			prompt := randomTokens(30, cfg.Vocab, 4)
			tokens := randomTokens(3, cfg.Vocab, 5)
			batch := mixedDepthStep(t, m, p, opt, CacheF32, 64, prompt, tokens, period)
			// Token 0 is now complete: its logits are Forward's.
			ref, err := m.NewCache(64, CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(p, ref, prompt, nil, opt); err != nil {
				t.Fatal(err)
			}
			wantLogits := make([]float32, cfg.Vocab)
			if err := m.Forward(p, ref, tokens[:1], wantLogits, opt); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, cfg.Vocab)
			m.Head(p, batch[:dim], 1, got)
			if d := countDiff(got, wantLogits); d != 0 {
				t.Errorf("the completed token's logits: %d of %d differ from Forward's", d, cfg.Vocab)
			}
		})
	}
}

// mixedDepthStep checks one step of a block-shared model's pipeline with Options opt: on
// a fresh cache of the given kind and capacity that has run prompt, token 0 has run
// layers 0..3, token 1 layers 0..1 and token 2 none; one step runs token 0 through 4..5,
// token 1 through 2..3 and token 2 through 0..1 (period 2), each stage alone and then
// all three as one batch, which must give each stage's rows bitwise. It returns the
// batch's rows (3 x Dim).
func mixedDepthStep(t *testing.T, m *Model, p *kernels.Pool, opt *Options, kind CacheType, capacity int, prompt, tokens []int32, period int) []float32 {
	t.Helper()
	dim := m.Config.Dim
	pos := len(prompt)
	setup := func() (*Cache, [][]float32) {
		c, err := m.NewCache(capacity, kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Forward(p, c, prompt, nil, opt); err != nil {
			t.Fatal(err)
		}
		x := make([][]float32, 3)
		for i := range x {
			x[i] = make([]float32, dim)
			if err := m.Embed(x[i], tokens[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range []struct{ row, depth int }{{0, 4}, {1, 2}} {
			if err := m.ForwardLayers(p, c, x[r.row], []Stage{{Layer: 0, Pos: pos + r.row, Rows: 1}}, r.depth, opt); err != nil {
				t.Fatal(err)
			}
		}
		return c, x
	}
	stages := []Stage{{Layer: 4, Pos: pos, Rows: 1}, {Layer: 2, Pos: pos + 1, Rows: 1}, {Layer: 0, Pos: pos + 2, Rows: 1}}
	c, want := setup()
	for i, s := range stages {
		if err := m.ForwardLayers(p, c, want[i], []Stage{s}, period, opt); err != nil {
			t.Fatal(err)
		}
	}
	c, x := setup()
	batch := make([]float32, 0, 3*dim)
	for i := range stages {
		batch = append(batch, x[i]...)
	}
	if err := m.ForwardLayers(p, c, batch, stages, period, opt); err != nil {
		t.Fatal(err)
	}
	for i := range stages {
		if d := countDiff(batch[i*dim:(i+1)*dim], want[i]); d != 0 {
			t.Errorf("stage %d: %d of %d values differ from running it alone", i, d, dim)
		}
	}
	return batch
}

// TestForwardLayersErrors checks that bad calls fail with the right error and leave the
// cache alone.
func TestForwardLayersErrors(t *testing.T) {
	m := sharedModel(t, partialSpec, 2)
	other := loadSpec(t, partialSpec)
	p := kernels.NewPool(1)
	defer p.Close()
	c, err := m.NewCache(16, CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 4*m.Config.Dim)
	tests := []struct {
		name   string
		model  *Model
		stages []Stage
		depth  int
		want   error
		msg    string
	}{
		{"no stages", m, nil, 1, ErrStages, "no stages"},
		{"depth 0", m, []Stage{{Rows: 1}}, 0, ErrStages, "depth"},
		{"empty stage", m, []Stage{{Rows: 0}}, 1, ErrStages, "0 rows"},
		{"past the last layer", m, []Stage{{Layer: 5, Rows: 1}}, 2, ErrStages, "layers 5..6"},
		{"not congruent", m, []Stage{{Layer: 0, Rows: 1}, {Layer: 1, Pos: 1, Rows: 1}}, 1, ErrStages, "every 2 layers"},
		{"distinct layers", other, []Stage{{Layer: 0, Rows: 1}, {Layer: 2, Pos: 1, Rows: 1}}, 1, ErrStages, "every 6 layers"},
		{"past the cache", m, []Stage{{Pos: 15, Rows: 2}}, 1, ErrContextFull, "need 17"},
		{"too many rows for x", m, []Stage{{Rows: 5}}, 1, nil, "x has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := c
			if tt.model != m {
				cc, _ = tt.model.NewCache(16, CacheF32)
			}
			err := tt.model.ForwardLayers(p, cc, x, tt.stages, tt.depth, nil)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
	if err := m.ForwardLayers(p, c, x, []Stage{{Rows: 1}}, 1, nil); err == nil {
		if err := c.SetLen(17); err == nil {
			t.Error("SetLen past the capacity succeeded")
		}
	}
	if err := m.ForwardLayers(p, c, x, []Stage{{Rows: 1}}, 1, nil); err != nil {
		t.Errorf("a good call failed: %v", err)
	}
	if err := m.Embed(x, []int32{int32(m.Config.Vocab)}); !errors.Is(err, ErrToken) {
		t.Errorf("Embed of an out-of-range token: %v, want ErrToken", err)
	}
}

// TestHeadExact checks that HeadExact gives each row bitwise the logits of a one-token
// Forward, for a batch of final hidden states.
func TestHeadExact(t *testing.T) {
	m := loadSpec(t, partialSpec)
	cfg := &m.Config
	p := kernels.NewPool(2)
	defer p.Close()
	c, err := m.NewCache(32, CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	tokens := randomTokens(5, cfg.Vocab, 6)
	var hidden, want []float32
	logits := make([]float32, cfg.Vocab)
	for i := range tokens {
		obs := func(s *LayerState) {
			if s.Layer == cfg.Layers-1 {
				hidden = append(hidden, s.Hidden...)
			}
		}
		if err := m.Forward(p, c, tokens[i:i+1], logits, &Options{Observe: obs}); err != nil {
			t.Fatal(err)
		}
		want = append(want, logits...)
	}
	got := make([]float32, len(want))
	m.HeadExact(p, hidden, len(tokens), got)
	if d := countDiff(got, want); d != 0 {
		t.Errorf("%d of %d logits differ from one-token passes", d, len(want))
	}
}

// TestSubHead checks that the restricted head gives the full head's logits of its tokens
// (to rounding: the rows are grouped differently), ignoring duplicates and bad ids.
func TestSubHead(t *testing.T) {
	m := loadSpec(t, partialSpec)
	cfg := &m.Config
	p := kernels.NewPool(2)
	defer p.Close()
	hidden := make([]float32, 3*cfg.Dim)
	for i := range hidden {
		hidden[i] = float32(i%17) - 8
	}
	full := make([]float32, 3*cfg.Vocab)
	m.Head(p, append([]float32(nil), hidden...), 3, full)
	h := m.SubHead([]int32{5, 7, 5, -1, int32(cfg.Vocab)})
	h.Add(7, 299, 0)
	ids := h.IDs()
	if want := []int32{5, 7, 299, 0}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("IDs %v, want %v", ids, want)
	}
	got := make([]float32, 3*len(ids))
	h.Logits(p, hidden, 3, got)
	for r := range 3 {
		for i, id := range ids {
			a, b := got[r*len(ids)+i], full[r*cfg.Vocab+int(id)]
			if d := a - b; d > 1e-4 || d < -1e-4 {
				t.Errorf("row %d token %d: %v, full head %v", r, id, a, b)
			}
		}
	}
}
