package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// kvShift perturbs the float64 reference: element (token, channel) of layer's keys before
// RoPE (or values, with values set) is increased by delta, or, with dir set, every element
// of that layer's keys or values by delta·dir[token*KVDim+channel].
type kvShift struct {
	layer          int
	values         bool
	token, channel int
	dir            []float64
	delta          float64
}

// loss is the float64 reference of KVGrad's loss: naiveModel's forward pass with the
// shift applied to one layer's keys before RoPE or values, then Σ w_i·CE_i.
func (nm *naiveModel) loss(tokens []int32, weights []float64, sh kvShift) float64 {
	kvDim := nm.cfg.KVDim()
	logits := nm.perturbed(tokens, func(layer, i int, key, val []float64) {
		if layer != sh.layer {
			return
		}
		target := key
		if sh.values {
			target = val
		}
		switch {
		case sh.dir != nil:
			for j := range target {
				target[j] += sh.delta * sh.dir[i*kvDim+j]
			}
		case i == sh.token:
			target[sh.channel] += sh.delta
		}
	})
	var loss float64
	for i := range len(tokens) - 1 {
		top := slices.Max(logits[i])
		var sum float64
		for _, z := range logits[i] {
			sum += math.Exp(z - top)
		}
		w := 1 / float64(len(tokens)-1)
		if weights != nil {
			w = weights[i]
		}
		loss += w * (top + math.Log(sum) - logits[i][tokens[i+1]])
	}
	return loss
}

// runKVGrad runs a KVGrad over tokens and returns the loss and every layer's key and
// value gradients.
func runKVGrad(t *testing.T, m *Model, p *kernels.Pool, tokens []int32, weights []float32) (float64, [][]float32, [][]float32) {
	t.Helper()
	g, err := m.NewKVGrad(len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &m.Config
	dk, dv := make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
	for l := range dk {
		dk[l] = make([]float32, len(tokens)*cfg.KVDim())
		dv[l] = make([]float32, len(tokens)*cfg.KVDim())
	}
	loss, err := g.Run(p, tokens, weights, dk, dv)
	if err != nil {
		t.Fatal(err)
	}
	return loss, dk, dv
}

// TestKVGradFiniteDifferences checks KVGrad's key (before RoPE) and value gradients in
// every layer against central differences of the float64 reference loss: the elements of
// largest gradient and random ones, and the derivative along a random direction of all of
// a layer's keys or values.
func TestKVGradFiniteDifferences(t *testing.T) {
	tests := []struct {
		name    string
		spec    modeltest.Spec
		n       int
		weights bool
	}{
		{"llama/gqa", modeltest.Spec{Arch: "llama"}, 12, false},
		{"llama/3-layers/weighted", modeltest.Spec{Arch: "llama", Layers: 3}, 12, true},
		{"llama/mha/f16", modeltest.Spec{Arch: "llama", Heads: 4, KVHeads: 4, RopeBase: 500, Weights: gguf.TypeF16}, 10, false},
		{"llama/mqa/headdim", modeltest.Spec{Arch: "llama", Heads: 4, KVHeads: 1, HeadDim: 24}, 10, false},
		{"llama/partial-rope/linear/tied", modeltest.Spec{Arch: "llama", RopeDim: 8, RopeLinear: 4, Tied: true}, 10, false},
		{"llama/rope-factors", modeltest.Spec{Arch: "llama", RopeFactors: true, RopeBase: 5e5}, 10, false},
		{"qwen2/bias", modeltest.Spec{Arch: "qwen2", RopeBase: 1e6}, 12, true},
		// Longer than one attention block: the causal block products and their sums.
		{"llama/blocks", modeltest.Spec{Arch: "llama", Context: 512}, attnBlock + 9, false},
	}
	p := kernels.NewPool(2)
	defer p.Close()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Seed = uint64(100 + i)
			m := loadSpec(t, tc.spec)
			nm := newNaive(t, m)
			cfg := &m.Config
			tokens := randomTokens(tc.n, cfg.Vocab, uint64(i))
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			var w32 []float32
			var w64 []float64
			if tc.weights {
				for j := range tc.n - 1 {
					w := float32(rng.Float64())
					if j%4 == 1 {
						w = 0
					}
					w32, w64 = append(w32, w), append(w64, float64(w))
				}
			}
			loss, dk, dv := runKVGrad(t, m, p, tokens, w32)
			want := nm.loss(tokens, w64, kvShift{layer: -1})
			if d := math.Abs(loss-want) / want; d > 1e-5 {
				t.Errorf("loss %v, float64 reference %v (relative difference %.1e)", loss, want, d)
			}
			const h = 1e-4
			kvDim := cfg.KVDim()
			for l := range cfg.Layers {
				for _, values := range []bool{false, true} {
					grad := dk[l]
					if values {
						grad = dv[l]
					}
					// The largest gradients and some random elements.
					idx := make([]int, len(grad))
					for j := range idx {
						idx[j] = j
					}
					slices.SortFunc(idx, func(a, b int) int {
						return -cmpAbs(grad[a], grad[b])
					})
					check := idx[:4]
					for range 4 {
						check = append(check, rng.IntN(len(grad)))
					}
					var worst, scale float64
					for _, e := range check {
						sh := kvShift{layer: l, values: values, token: e / kvDim, channel: e % kvDim, delta: h}
						plus := nm.loss(tokens, w64, sh)
						sh.delta = -h
						fd := (plus - nm.loss(tokens, w64, sh)) / (2 * h)
						worst = max(worst, math.Abs(fd-float64(grad[e])))
						scale = max(scale, math.Abs(fd))
					}
					t.Logf("layer %d values=%v: max |grad - fd| / max |fd| = %.1e (max |fd| %.2g)", l, values, worst/scale, scale)
					if scale == 0 || worst/scale > 1e-4 {
						t.Errorf("layer %d values=%v: max |grad - finite difference| %.3g, max |finite difference| %.3g", l, values, worst, scale)
					}
					// The derivative along a random direction.
					dir := make([]float64, len(grad))
					var dot, size float64 // size: the sum's magnitude without cancellation
					for j := range dir {
						dir[j] = rng.NormFloat64()
						dot += dir[j] * float64(grad[j])
						size += math.Abs(dir[j] * float64(grad[j]))
					}
					sh := kvShift{layer: l, values: values, dir: dir, delta: h}
					plus := nm.loss(tokens, w64, sh)
					sh.delta = -h
					fd := (plus - nm.loss(tokens, w64, sh)) / (2 * h)
					t.Logf("layer %d values=%v: directional derivative error %.1e of Σ|u·grad|", l, values, math.Abs(fd-dot)/size)
					if math.Abs(fd-dot) > 1e-4*size {
						t.Errorf("layer %d values=%v: directional derivative %.6g, finite difference %.6g", l, values, dot, fd)
					}
				}
			}
		})
	}
}

func cmpAbs(a, b float32) int {
	a, b = float32(math.Abs(float64(a))), float32(math.Abs(float64(b)))
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestKVGradLossMatchesForward checks that the gradient pass's own forward pass gives the
// loss of Forward's logits, and that a KVGrad reused for a shorter sequence gives what a
// fresh one does.
func TestKVGradLossMatchesForward(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Arch: "llama", Context: 512, Weights: gguf.TypeQ8_0, Seed: 3})
	p := kernels.NewPool(2)
	defer p.Close()
	cfg := &m.Config
	tokens := randomTokens(300, cfg.Vocab, 5)
	c, err := m.NewCache(len(tokens), CacheF32)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, len(tokens)*cfg.Vocab)
	kvDim := cfg.KVDim()
	wantK, wantV := make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
	for l := range wantK {
		wantK[l], wantV[l] = make([]float32, len(tokens)*kvDim), make([]float32, len(tokens)*kvDim)
	}
	observe := func(s *LayerState) {
		copy(wantK[s.Layer][s.Pos*kvDim:], s.KeysPreRoPE)
		copy(wantV[s.Layer][s.Pos*kvDim:], s.Values)
	}
	if err := m.Forward(p, c, tokens, logits, &Options{AllLogits: true, Observe: observe}); err != nil {
		t.Fatal(err)
	}
	var want float64
	for i := range len(tokens) - 1 {
		row := logits[i*cfg.Vocab : (i+1)*cfg.Vocab]
		target := row[tokens[i+1]]
		want += float64(kernels.Softmax(row) - target)
	}
	want /= float64(len(tokens) - 1)

	g, err := m.NewKVGrad(len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	buffers := func() ([][]float32, [][]float32) {
		dk, dv := make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
		for l := range dk {
			dk[l] = make([]float32, len(tokens)*cfg.KVDim())
			dv[l] = make([]float32, len(tokens)*cfg.KVDim())
		}
		return dk, dv
	}
	dk, dv := buffers()
	observed := 0
	g.Observe = func(l int, keys, values []float32) {
		observed++
		if d := relDiff(keys, wantK[l]); d > 1e-6 {
			t.Errorf("layer %d: observed keys differ from Forward's by %.1e", l, d)
		}
		if d := relDiff(values, wantV[l]); d > 1e-6 {
			t.Errorf("layer %d: observed values differ from Forward's by %.1e", l, d)
		}
	}
	loss, err := g.Run(p, tokens, nil, dk, dv)
	if observed != cfg.Layers {
		t.Errorf("Observe called %d times, want %d", observed, cfg.Layers)
	}
	g.Observe = nil
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(loss-want) / want; d > 1e-5 {
		t.Errorf("loss %v, from Forward's logits %v (relative difference %.1e)", loss, want, d)
	}

	short := tokens[:77]
	dk2, dv2 := buffers()
	if _, err := g.Run(p, short, nil, dk2, dv2); err != nil {
		t.Fatal(err)
	}
	_, dk3, dv3 := runKVGrad(t, m, p, short, nil)
	for l := range cfg.Layers {
		if !slices.Equal(dk2[l][:len(short)*cfg.KVDim()], dk3[l][:len(short)*cfg.KVDim()]) ||
			!slices.Equal(dv2[l][:len(short)*cfg.KVDim()], dv3[l][:len(short)*cfg.KVDim()]) {
			t.Errorf("layer %d: a reused KVGrad gives other gradients than a fresh one", l)
		}
	}
}

// TestKVGradErrors checks Run's argument errors.
func TestKVGradErrors(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{Arch: "llama", Seed: 4})
	p := kernels.NewPool(1)
	defer p.Close()
	cfg := &m.Config
	if _, err := m.NewKVGrad(1); err == nil {
		t.Error("NewKVGrad(1) succeeded")
	}
	g, err := m.NewKVGrad(8)
	if err != nil {
		t.Fatal(err)
	}
	buf := func(n int) [][]float32 {
		b := make([][]float32, cfg.Layers)
		for l := range b {
			b[l] = make([]float32, n*cfg.KVDim())
		}
		return b
	}
	tests := []struct {
		name    string
		tokens  []int32
		weights []float32
		dk, dv  [][]float32
		is      error
	}{
		{"too long", make([]int32, 9), nil, buf(9), buf(9), nil},
		{"one token", make([]int32, 1), nil, buf(1), buf(1), nil},
		{"bad token", []int32{1, int32(cfg.Vocab)}, nil, buf(2), buf(2), ErrToken},
		{"weights length", make([]int32, 4), make([]float32, 4), buf(4), buf(4), ErrLossWeights},
		{"weights NaN", make([]int32, 3), []float32{1, float32(math.NaN())}, buf(3), buf(3), ErrLossWeights},
		{"short buffers", make([]int32, 4), nil, buf(3), buf(4), nil},
		{"missing layers", make([]int32, 4), nil, buf(4)[:1], buf(4), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Run(p, tc.tokens, tc.weights, tc.dk, tc.dv)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
		})
	}
}
