package eval

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"squeeze/precompute"
	"squeeze/runtime/gguf"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
)

// synthetic returns a random-weight model, its file and a pool.
func synthetic(t testing.TB) (*model.Model, *gguf.File, *kernels.Pool) {
	t.Helper()
	f := modeltest.Open(t, modeltest.Spec{Context: 1024, Seed: 3})
	m, err := model.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(2)
	t.Cleanup(pool.Close)
	return m, f, pool
}

func TestWindows(t *testing.T) {
	tokens := []int32{5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	tests := []struct {
		name    string
		c, q, n int
		bos     int32
		want    [][]int32
	}{
		{"all", 2, 2, 0, 1, [][]int32{{1, 6, 7, 8}, {1, 10, 11, 12}}},
		{"first", 2, 2, 1, 1, [][]int32{{1, 6, 7, 8}}},
		{"more than fit", 3, 2, 5, 0, [][]int32{{0, 6, 7, 8, 9}, {0, 11, 12, 13, 14}}},
		{"no bos", 4, 1, 0, -1, [][]int32{{5, 6, 7, 8, 9}, {10, 11, 12, 13, 14}}},
		{"too long", 10, 2, 0, 1, [][]int32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Windows(tokens, tt.c, tt.q, tt.n, tt.bos)
			if !slices.EqualFunc(got, tt.want, slices.Equal[[]int32]) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if tokens[0] != 5 {
		t.Error("Windows changed its input")
	}
}

func TestRunValidation(t *testing.T) {
	m, f, pool := synthetic(t)
	tokens := modeltest.Tokens(600, m.Config.Vocab, 1)
	tests := []struct {
		name string
		pool *kernels.Pool
		o    Options
	}{
		{"no pool", nil, Options{Context: 64, Query: 8}},
		{"short context", pool, Options{Context: 3, Query: 8}},
		{"short query", pool, Options{Context: 64, Query: 1}},
		{"negative windows", pool, Options{Context: 64, Query: 8, Windows: -1}},
		{"negative block", pool, Options{Context: 64, Query: 8, Block: -1}},
		{"empty budgets", pool, Options{Context: 64, Query: 8, Budgets: []float64{}}},
		{"zero budget", pool, Options{Context: 64, Query: 8, Budgets: []float64{0}}},
		{"budget above 1", pool, Options{Context: 64, Query: 8, Budgets: []float64{1.5}}},
		{"NaN budget", pool, Options{Context: 64, Query: 8, Budgets: []float64{math.NaN()}}},
		{"bad mode", pool, Options{Context: 64, Query: 8, Modes: []Mode{"sideways"}}},
		{"too few tokens", pool, Options{Context: 512, Query: 256}},
		{"too many windows", pool, Options{Context: 256, Query: 64, Windows: 2}},
		{"past the context length", pool, Options{Context: 1000, Query: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), m, f, tt.pool, tokens, 1, tt.o)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	m, f, pool := synthetic(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, m, f, pool, modeltest.Tokens(400, m.Config.Vocab, 1), 1, Options{Context: 128, Query: 16})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestRunSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("squeezes two windows of a synthetic model")
	}
	m, f, pool := synthetic(t)
	const c, q = 384, 48
	tokens := modeltest.Tokens(2*(c+q)+10, m.Config.Vocab, 2)
	budgets := []float64{1, 0.5, 0.25}
	var progress []int
	rows, err := Run(context.Background(), m, f, pool, tokens, 1, Options{
		Windows: 2, Context: c, Query: q, Budgets: budgets, Modes: []Mode{ModePrefill, ModeDecode},
		Progress: func(p Progress) { progress = append(progress, p.Done) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(progress, []int{1, 2}) {
		t.Errorf("progress %v, want [1 2]", progress)
	}
	if len(rows) != 2*len(budgets) {
		t.Fatalf("%d rows, want %d", len(rows), 2*len(budgets))
	}
	for i, r := range rows {
		t.Logf("%+v", r)
		wantMode := ModePrefill
		if i >= len(budgets) {
			wantMode = ModeDecode
		}
		if r.Mode != wantMode || r.Budget != budgets[i%len(budgets)] || r.KV != "f16" || r.Windows != 2 || r.Tokens != 2*(q-1) {
			t.Errorf("row %d: %+v", i, r)
		}
		if r.PPLDense != rows[0].PPLDense || !(r.PPL > 1) || !(r.KL >= 0) || r.Top1 < 0 || r.Top1 > 1 {
			t.Errorf("row %d out of range: %+v", i, r)
		}
		if r.Budget == 1 {
			// Every key read, stored in f16: the dense result up to rounding.
			if math.Abs(r.PPLRatio-1) > 1e-3 || r.KL > 1e-4 || r.Top1 != 1 || r.RealizedBudget != 1 || r.AttentionMass != 1 {
				t.Errorf("budget 1 differs from dense: %+v", r)
			}
			continue
		}
		if r.AttentionMass <= 0 || r.AttentionMass >= 1 {
			t.Errorf("row %d: attention mass %v", i, r.AttentionMass)
		}
		if r.Mode == ModeDecode && (r.RealizedBudget < r.Budget/2 || r.RealizedBudget > r.Budget*1.6) {
			t.Errorf("row %d: realized budget %v for %v", i, r.RealizedBudget, r.Budget)
		}
	}
}

// TestBlockOfOneIsDecode checks that a prefill in blocks of one token makes the same
// lookups, and so the same scores, as decoding.
func TestBlockOfOneIsDecode(t *testing.T) {
	m, f, pool := synthetic(t)
	const c, q = 192, 12
	rows, err := Run(context.Background(), m, f, pool, modeltest.Tokens(c+q, m.Config.Vocab, 4), 1, Options{
		Context: c, Query: q, Budgets: []float64{0.25}, Modes: []Mode{ModePrefill, ModeDecode}, Block: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	p, d := rows[0], rows[1]
	p.Mode = d.Mode
	if p != d {
		t.Errorf("prefill in blocks of 1: %+v\ndecode: %+v", p, d)
	}
}

// TestRunKV evaluates quantized encodings beside f16: one row per encoding and budget,
// bits per element as stored, quantization costing some quality at budget 1, 2 bits
// more than 4.
func TestRunKV(t *testing.T) {
	m, f, pool := synthetic(t)
	const c, q = 256, 16
	rows, err := Run(context.Background(), m, f, pool, modeltest.Tokens(c+q, m.Config.Vocab, 5), 1, Options{
		Context: c, Query: q, Budgets: []float64{1, 0.5},
		KV: []precompute.KVOptions{{Encoding: "f16"}, {Encoding: "nuq4", Outliers: 0.01}, {Encoding: "int2", QNorm: precompute.QNormOn, PostRoPE: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	byKV := map[string]Row{}
	for i, r := range rows {
		t.Logf("%+v", r)
		wantKV := []string{"f16", "nuq4", "int2"}[i/2]
		if r.KV != wantKV || r.Budget != []float64{1, 0.5}[i%2] {
			t.Fatalf("row %d: %+v", i, r)
		}
		if r.Budget == 1 {
			byKV[r.KV] = r
		}
	}
	f16, nuq4, int2 := byKV["f16"], byKV["nuq4"], byKV["int2"]
	if f16.BitsPerElement != 16 || nuq4.BitsPerElement <= 4 || nuq4.BitsPerElement > 6 || int2.BitsPerElement <= 2 || int2.BitsPerElement > 4 {
		t.Errorf("bits per element: f16 %v, nuq4 %v, int2 %v", f16.BitsPerElement, nuq4.BitsPerElement, int2.BitsPerElement)
	}
	if nuq4.Outliers != 0.01 || !int2.QNorm || !int2.PostRoPE || f16.Outliers != 0 {
		t.Errorf("settings: nuq4 %+v, int2 %+v", nuq4, int2)
	}
	if !(nuq4.KL > 0) || !(int2.KL > nuq4.KL) {
		t.Errorf("KL at budget 1: nuq4 %v, int2 %v", nuq4.KL, int2.KL)
	}
	if _, err := Run(context.Background(), m, f, pool, modeltest.Tokens(c+q, m.Config.Vocab, 5), 1, Options{
		Context: c, Query: q, KV: []precompute.KVOptions{{Encoding: "nuq9"}},
	}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nuq9: %v, want ErrInvalid", err)
	}
}
