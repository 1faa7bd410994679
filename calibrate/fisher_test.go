package calibrate

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"squeeze/runtime/kernels"
	"squeeze/runtime/kvquant"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
)

// kvGrad runs model.KVGrad once and returns the squared gradients and the
// activations.
func kvGrad(t *testing.T, m *model.Model, p *kernels.Pool, tokens []int32, weights []float32) (fk, fv, ak, av [][]float32, loss float64) {
	t.Helper()
	cfg := &m.Config
	g, err := m.NewKVGrad(len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	n := len(tokens) * cfg.KVDim()
	for range cfg.Layers {
		fk, fv = append(fk, make([]float32, n)), append(fv, make([]float32, n))
		ak, av = append(ak, make([]float32, n)), append(av, make([]float32, n))
	}
	g.Observe = func(l int, k, v []float32) {
		copy(ak[l], k)
		copy(av[l], v)
	}
	loss, err = g.Run(p, tokens, weights, fk, fv)
	if err != nil {
		t.Fatal(err)
	}
	for l := range fk {
		square(fk[l], fk[l])
		square(fv[l], fv[l])
	}
	return fk, fv, ak, av, loss
}

// TestFisherWindows checks Fisher's windows against single gradient passes: one window
// over the whole text is the squared gradient of the mean loss; with several windows,
// each window's tokens get the squared gradients (and activations) of a pass over the
// sink and that window, whose loss weights count every prediction but the sink's once
// over the whole text.
func TestFisherWindows(t *testing.T) {
	m, _, _ := testmodel.Spec(t, modeltest.Spec{Arch: "qwen2", Seed: 11})
	cfg := &m.Config
	kvDim := cfg.KVDim()
	p := kernels.NewPool(2)
	defer p.Close()
	tokens := modeltest.Tokens(50, cfg.Vocab, 1)

	t.Run("one window", func(t *testing.T) {
		s, err := Fisher(context.Background(), m, p, tokens, FisherOptions{Window: 64, Activations: true})
		if err != nil {
			t.Fatal(err)
		}
		fk, fv, ak, av, loss := kvGrad(t, m, p, tokens, nil)
		if s.Windows != 1 || s.Loss != loss {
			t.Errorf("windows %d, loss %v; want 1 and %v", s.Windows, s.Loss, loss)
		}
		for l := range cfg.Layers {
			if !slices.Equal(s.Keys[l], fk[l]) || !slices.Equal(s.Values[l], fv[l]) ||
				!slices.Equal(s.KeysPreRoPE[l], ak[l]) || !slices.Equal(s.ValueActs[l], av[l]) {
				t.Errorf("layer %d: sensitivities or activations differ from one gradient pass", l)
			}
		}
	})

	tests := []struct {
		name         string
		window, sink int
		// spans: each window's [start, end) of the text and the tokens before it.
		spans [][3]int
	}{
		{"sink 1", 20, 0, [][3]int{{0, 20, 0}, {20, 39, 1}, {39, 50, 1}}},
		{"sink 3", 20, 3, [][3]int{{0, 20, 0}, {20, 37, 3}, {37, 50, 3}}},
		// Without a sink, a last window of one token runs behind its predecessor.
		{"no sink", 7, -1, [][3]int{{0, 7, 0}, {7, 14, 0}, {14, 21, 0}, {21, 28, 0}, {28, 35, 0}, {35, 42, 0}, {42, 49, 0}, {49, 50, -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var done []int
			s, err := Fisher(context.Background(), m, p, tokens, FisherOptions{
				Window: tc.window, Sink: tc.sink, Activations: true,
				Progress: func(d, total int) {
					if total != len(tokens) {
						t.Errorf("progress total %d, want %d", total, len(tokens))
					}
					done = append(done, d)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if s.Windows != len(tc.spans) || len(done) != len(tc.spans) || done[len(done)-1] != len(tokens) {
				t.Fatalf("%d windows, progress %v; want %d windows ending at %d", s.Windows, done, len(tc.spans), len(tokens))
			}
			predicted := len(tokens) - len(tc.spans)
			var total float64
			for _, sp := range tc.spans {
				var before []int32
				switch {
				case sp[2] > 0:
					before = tokens[:sp[2]]
				case sp[2] < 0:
					before = tokens[sp[0]-1 : sp[0]]
				}
				win := append(slices.Clone(before), tokens[sp[0]:sp[1]]...)
				weights := make([]float32, len(win)-1)
				for i := len(before); i < len(weights); i++ {
					weights[i] = float32(1 / float64(predicted))
				}
				fk, fv, ak, av, loss := kvGrad(t, m, p, win, weights)
				total += loss
				lead := len(before) * kvDim
				for l := range cfg.Layers {
					at := func(x []float32) []float32 { return x[sp[0]*kvDim : sp[1]*kvDim] }
					if !slices.Equal(at(s.Keys[l]), fk[l][lead:]) || !slices.Equal(at(s.Values[l]), fv[l][lead:]) {
						t.Errorf("window %v layer %d: sensitivities differ from the window's gradient pass", sp, l)
					}
					if !slices.Equal(at(s.KeysPreRoPE[l]), ak[l][lead:]) || !slices.Equal(at(s.ValueActs[l]), av[l][lead:]) {
						t.Errorf("window %v layer %d: activations differ from the window's gradient pass", sp, l)
					}
				}
			}
			if math.Abs(s.Loss-total) > 1e-9*total {
				t.Errorf("loss %v, sum of the windows' %v", s.Loss, total)
			}
		})
	}
}

// TestFisherChannelMeans checks the per-channel aggregate and its broadcast on a
// hand-made Sensitivity.
func TestFisherChannelMeans(t *testing.T) {
	s := &Sensitivity{Layers: 1, Tokens: 3, KVHeads: 1, HeadDim: 2,
		Keys:   [][]float32{{100, 200, 1, 2, 3, 4}},
		Values: [][]float32{{0, 0, 2, 4, 6, 8}},
	}
	k, v := s.ChannelMeans(1)
	if !slices.Equal(k[0], []float32{2, 3}) || !slices.Equal(v[0], []float32{4, 6}) {
		t.Errorf("ChannelMeans(1) = %v, %v; want [2 3], [4 6]", k[0], v[0])
	}
	k, _ = s.ChannelMeans(0)
	if !slices.Equal(k[0], []float32{104.0 / 3, 206.0 / 3}) {
		t.Errorf("ChannelMeans(0) keys = %v", k[0])
	}
	bk, bv := s.Broadcast(0, 2, 1)
	if !slices.Equal(bk, []float32{2, 3, 2, 3}) || !slices.Equal(bv, []float32{4, 6, 4, 6}) {
		t.Errorf("Broadcast(0, 2, 1) = %v, %v; want [2 3 2 3], [4 6 4 6]", bk, bv)
	}
}

// TestFisherErrors checks bad arguments and cancellation.
func TestFisherErrors(t *testing.T) {
	m, _, _ := testmodel.Spec(t, modeltest.Spec{Seed: 12})
	p := kernels.NewPool(1)
	defer p.Close()
	tokens := modeltest.Tokens(30, m.Config.Vocab, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Fisher(ctx, m, p, tokens, FisherOptions{Window: 8}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
	for _, tc := range []struct {
		name   string
		tokens []int32
		opt    FisherOptions
	}{
		{"one token", tokens[:1], FisherOptions{}},
		{"window within sink", tokens, FisherOptions{Window: 4, Sink: 4}},
		{"window of one", tokens, FisherOptions{Window: 1, Sink: -1}},
		{"bad token", []int32{1, int32(m.Config.Vocab)}, FisherOptions{}},
	} {
		if _, err := Fisher(context.Background(), m, p, tc.tokens, tc.opt); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// loadGocode opens gocode-22m and tokenizes the first n tokens of the evaluation text.
func loadGocode(t testing.TB, n int) (*model.Model, []int32) {
	t.Helper()
	m, _, tok := testmodel.Shared(t, "gocode-22m")
	text := testmodel.DevText(t)
	tokens := tok.Encode(text[:min(len(text), 8*n)], true)
	if len(tokens) < n {
		t.Fatalf("dev.txt gives %d tokens, want %d", len(tokens), n)
	}
	return m, tokens[:n]
}

// TestFisherGocode times Fisher over an 8192-token context of gocode-22m (the budget: well
// under 2 minutes on two cores) and checks that the sensitivities are finite, non-zero
// in every layer, and that the loss is a plausible perplexity for this model. Then it
// fits every layer's 3-bit key and value datatypes (timed too) and checks that they
// reconstruct the layer with a lower Fisher-weighted error than uniform and NormalFloat.
func TestFisherGocode(t *testing.T) {
	if testing.Short() {
		t.Skip("gocode-22m over 8192 tokens: slow")
	}
	m, tokens := loadGocode(t, 8192)
	p := kernels.NewPool(2)
	defer p.Close()
	start := time.Now()
	s, err := Fisher(context.Background(), m, p, tokens, FisherOptions{Activations: true})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("Fisher of %d tokens, %d windows, 2 threads: %v (loss %.4f, perplexity %.3f)", len(tokens), s.Windows, took, s.Loss, math.Exp(s.Loss))
	if ppl := math.Exp(s.Loss); !(ppl > 2 && ppl < 20) {
		t.Errorf("perplexity %v, want a plausible value for gocode-22m on Go code", ppl)
	}
	keys, values := s.ChannelMeans(1)
	for l := range s.Layers {
		var sk, sv float64
		for c := range keys[l] {
			sk += float64(keys[l][c])
			sv += float64(values[l][c])
		}
		t.Logf("layer %d: mean key sensitivity %.3g, value %.3g", l, sk/float64(len(keys[l])), sv/float64(len(values[l])))
		if !(sk > 0) || !(sv > 0) || math.IsInf(sk, 0) || math.IsInf(sv, 0) {
			t.Errorf("layer %d: key and value sensitivity sums %v and %v, want finite and positive", l, sk, sv)
		}
	}

	var fitting time.Duration
	const bits, outliers = 3, kvquant.DefaultOutliers
	for l := range s.Layers {
		for _, kv := range []struct {
			name string
			x, f []float32
			axis kvquant.Axis
		}{
			{"keys", s.KeysPreRoPE[l], s.Keys[l], kvquant.PerChannel},
			{"values", s.ValueActs[l], s.Values[l], kvquant.PerToken},
		} {
			samples, err := HeadSamples(kv.x, kv.f, nil, s.KVHeads, s.HeadDim, 1)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			fit, err := FitDatatype(context.Background(), samples, kv.axis, DatatypeOptions{Bits: bits, Outliers: outliers})
			if err != nil {
				t.Fatal(err)
			}
			fitting += time.Since(start)
			uni, _ := kvquant.Uniform(bits)
			nf, _ := kvquant.NormalFloat(bits)
			errOf := func(dt kvquant.Datatype) float64 {
				var e float64
				for _, sm := range samples {
					rows, err := kvquant.Quantize(sm.X, sm.Dim, kvquant.Params{Type: dt, Axis: kv.axis, Outliers: outliers})
					if err != nil {
						t.Fatal(err)
					}
					got := make([]float32, len(sm.X))
					rows.Dequantize(got, 0, rows.Len())
					for i, x := range sm.X {
						d := float64(got[i] - x)
						e += float64(sm.Fisher[i]) * d * d
					}
				}
				return e
			}
			f, u, n := errOf(fit), errOf(uni), errOf(nf)
			t.Logf("layer %d %s: Fisher-weighted error relative to uniform: fitted %.3f, nf %.3f; signposts %.3f", l, kv.name, f/u, n/u, fit.Signposts)
			if f > u || f > n {
				t.Errorf("layer %d %s: fitted datatype's error %.4g is not below uniform %.4g and nf %.4g", l, kv.name, f, u, n)
			}
		}
	}
	t.Logf("fitting every layer's key and value datatypes (from the activations and sensitivities): %v", fitting)
}

// BenchmarkFisherGocode measures Fisher over two default windows of gocode-22m.
func BenchmarkFisherGocode(b *testing.B) {
	m, tokens := loadGocode(b, 2*DefaultWindow)
	p := kernels.NewPool(2)
	defer p.Close()
	for b.Loop() {
		if _, err := Fisher(context.Background(), m, p, tokens, FisherOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
