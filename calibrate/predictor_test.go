package calibrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/model/modeltest/testmodel"
)

// linearStates feeds f a prefill of a 2-layer "model" whose layer 0 leaves x (random,
// with an offset so that centering matters) and whose final hidden state is
// x + M x + b + noise, in passes of batch tokens; it returns M (output-major) and b.
func linearStates(f *PredictorFit, d, tokens, batch int, noise float64, seed uint64) (m, b []float64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	m, b = make([]float64, d*d), make([]float64, d)
	for i := range m {
		m[i] = rng.NormFloat64() / math.Sqrt(float64(d))
	}
	for i := range b {
		b[i] = rng.NormFloat64()
	}
	for pos := 0; pos < tokens; pos += batch {
		n := min(batch, tokens-pos)
		x, y := make([]float32, n*d), make([]float32, n*d)
		for t := range n {
			for j := range d {
				x[t*d+j] = float32(3 + rng.NormFloat64()*(1+float64(j%3)))
			}
			for i := range d {
				v := float64(x[t*d+i]) + b[i] + noise*rng.NormFloat64()
				for j := range d {
					v += m[i*d+j] * float64(x[t*d+j])
				}
				y[t*d+i] = float32(v)
			}
		}
		f.Observe(&model.LayerState{Layer: 0, Pos: pos, Tokens: n, Hidden: x})
		f.Observe(&model.LayerState{Layer: 1, Pos: pos, Tokens: n, Hidden: y})
	}
	return m, b
}

// TestRidgeRecoversLinearMap checks the regression on states that a known affine map
// relates: at full rank it recovers the map and the bias; at a lower rank it recovers
// the best approximation of a map that has that rank.
func TestRidgeRecoversLinearMap(t *testing.T) {
	const d, tokens = 24, 1500
	pool := kernels.NewPool(2)
	defer pool.Close()
	cfg := &model.Config{Layers: 2, Dim: d, Vocab: 10}
	f, err := NewPredictorFit(cfg, pool, tokens, PredictorOptions{Window: 100, Ridges: []float64{1e-9}})
	if err != nil {
		t.Fatal(err)
	}
	m, b := linearStates(f, d, tokens, 200, 0.01, 1)
	p, err := f.solve(0, 1, 1e-9)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(cfg); err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i := range d * d {
		worst = math.Max(worst, math.Abs(float64(p.Full[i])-m[i]))
	}
	for i := range d {
		worst = math.Max(worst, math.Abs(float64(p.Bias[i])-b[i]))
	}
	if worst > 0.01 {
		t.Errorf("full rank: largest error %.4f in the recovered map and bias", worst)
	}

	// A map of rank 3: the rank-3 fit recovers it, a rank-1 fit cannot.
	for _, rank := range []int{3, 1} {
		t.Run(fmt.Sprintf("rank=%d", rank), func(t *testing.T) {
			f, err := NewPredictorFit(cfg, pool, tokens, PredictorOptions{Window: 100, Rank: rank})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(4, 4))
			u, v := make([]float64, d*3), make([]float64, 3*d)
			for i := range u {
				u[i], v[i] = rng.NormFloat64()/3, rng.NormFloat64()/3
			}
			low := make([]float64, d*d)
			for i := range d {
				for j := range d {
					for k := range 3 {
						low[i*d+j] += u[i*3+k] * v[k*d+j]
					}
				}
			}
			feedMap(f, d, tokens, low, 2)
			p, err := f.solve(0, 1, 1e-6)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Check(cfg); err != nil {
				t.Fatal(err)
			}
			var worst float64
			for i := range d {
				for j := range d {
					var e float64
					for k := range rank {
						e += float64(p.B[i*rank+k]) * float64(p.A[k*d+j])
					}
					worst = math.Max(worst, math.Abs(e-low[i*d+j]))
				}
			}
			if rank == 3 && worst > 0.01 {
				t.Errorf("largest error %.4f in the recovered rank-3 map", worst)
			}
			if rank == 1 && worst < 0.05 {
				t.Errorf("a rank-1 fit of a rank-3 map is off by only %.4f", worst)
			}
		})
	}
}

// feedMap is linearStates with a given map and no bias or noise.
func feedMap(f *PredictorFit, d, tokens int, m []float64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	for pos := 0; pos < tokens; pos += 300 {
		n := min(300, tokens-pos)
		x, y := make([]float32, n*d), make([]float32, n*d)
		for t := range n {
			for j := range d {
				x[t*d+j] = float32(rng.NormFloat64())
			}
			for i := range d {
				v := float64(x[t*d+i])
				for j := range d {
					v += m[i*d+j] * float64(x[t*d+j])
				}
				y[t*d+i] = float32(v)
			}
		}
		f.Observe(&model.LayerState{Layer: 0, Pos: pos, Tokens: n, Hidden: x})
		f.Observe(&model.LayerState{Layer: 1, Pos: pos, Tokens: n, Hidden: y})
	}
}

// TestFitPredictorModel fits predictors on a small model's prefill: every candidate depth
// is scored, the result passes Check, and a map fitted on the model's own states agrees
// with its greedy tokens at least as often as the raw exit at the last depth.
func TestFitPredictorModel(t *testing.T) {
	spec := modeltest.Spec{Layers: 4, Dim: 32, FFN: 64, Heads: 4, KVHeads: 2, Vocab: 64, Context: 1024, Weights: gguf.TypeF32, Seed: 2}
	m, _, _ := testmodel.Spec(t, spec)
	pool := kernels.NewPool(2)
	defer pool.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	tokens := make([]int32, 600)
	for i := range tokens {
		// A repetitive text, so that the model's behaviour is learnable.
		tokens[i] = int32((i%17)*3+rng.IntN(2)) % int32(spec.Vocab)
	}
	for _, rank := range []int{0, 4, -1} {
		t.Run(fmt.Sprintf("rank=%d", rank), func(t *testing.T) {
			f, err := NewPredictorFit(&m.Config, pool, len(tokens), PredictorOptions{Rank: rank})
			if err != nil {
				t.Fatal(err)
			}
			c, err := m.NewCache(len(tokens), model.CacheF32)
			if err != nil {
				t.Fatal(err)
			}
			for lo := 0; lo < len(tokens); lo += 256 {
				hi := min(len(tokens), lo+256)
				if err := m.Forward(pool, c, tokens[lo:hi], nil, &model.Options{Observe: f.Observe}); err != nil {
					t.Fatal(err)
				}
			}
			p, err := f.Fit(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Check(&m.Config); err != nil {
				t.Fatal(err)
			}
			if len(p.Scores) != 3 {
				t.Fatalf("scores %+v, want depths 1..3", p.Scores)
			}
			for _, s := range p.Scores {
				if s.Acceptance < 0 || s.Acceptance > 1 || s.Raw < 0 || s.Raw > 1 {
					t.Errorf("score %+v out of range", s)
				}
			}
			if last := p.Scores[2]; rank >= 0 && last.Acceptance+0.05 < last.Raw {
				t.Errorf("the fitted map at depth 3 agrees %.2f of the time, the raw exit %.2f", last.Acceptance, last.Raw)
			}
			t.Logf("chosen depth %d, rank %d, scores %+v", p.Layer, p.Rank, p.Scores)
		})
	}
}

// TestPredictorFitOptions checks that impossible options are refused.
func TestPredictorFitOptions(t *testing.T) {
	cfg := &model.Config{Layers: 4, Dim: 8, Vocab: 10}
	tests := []struct {
		name   string
		cfg    *model.Config
		tokens int
		o      PredictorOptions
	}{
		{"one layer", &model.Config{Layers: 1, Dim: 8}, 1000, PredictorOptions{}},
		{"too short", cfg, 20, PredictorOptions{}},
		{"window too long", cfg, 100, PredictorOptions{Window: 90}},
		{"depth 0", cfg, 1000, PredictorOptions{Layers: []int{0}}},
		{"depth past the model", cfg, 1000, PredictorOptions{Layers: []int{4}}},
		{"ridge 0", cfg, 1000, PredictorOptions{Ridges: []float64{0}}},
		{"NaN ridge", cfg, 1000, PredictorOptions{Ridges: []float64{math.NaN()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewPredictorFit(tt.cfg, nil, tt.tokens, tt.o); !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v, want ErrInvalid", err)
			}
		})
	}
	f, err := NewPredictorFit(cfg, nil, 1000, PredictorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fit(context.Background(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Fit without states: %v, want ErrInvalid", err)
	}
}
