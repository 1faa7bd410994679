package kvquant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/index"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sparse"
)

// f32Rows is the plain float32 reference storage.
type f32Rows struct {
	dim  int
	data []float32
}

func (r *f32Rows) Len() int { return len(r.data) / r.dim }

func (r *f32Rows) Dots(dst, q []float32, lo, hi int) {
	for i := lo; i < hi; i++ {
		dst[i-lo] = kernels.Dot(q[:r.dim], r.data[i*r.dim:(i+1)*r.dim])
	}
}

func (r *f32Rows) Accumulate(out, w []float32, lo, hi int) {
	for i := lo; i < hi; i++ {
		kernels.Axpy(w[i-lo], r.data[i*r.dim:(i+1)*r.dim], out[:r.dim])
	}
}

// dequantized returns r decoded as f32 rows.
func dequantized(r sparse.Rows, dim int) []float32 {
	out := make([]float32, r.Len()*dim)
	switch v := r.(type) {
	case *Rows:
		v.Dequantize(out, 0, v.Len())
	case *sparse.F16Rows:
		kernels.F16ToF32Slice(out, v.Data)
	}
	return out
}

// quantizedContext builds a context of S positions for m's shape: the first sink
// positions and the last window are always attended (the sink in f16, the window
// quantized), the rest clustered in runs of leaf positions after a shuffle; keys are
// quantized before RoPE per channel with ranges over all non-sink positions, values per
// token. It also returns the same context with every row decoded into f32 and f16 rows.
func quantizedContext(t testing.TB, rng *rand.Rand, m *model.Model, S, sink, window, leaf int, kt, vt Datatype) (q, ref32, ref16 *sparse.Context) {
	t.Helper()
	cfg := &m.Config
	hd := cfg.HeadDim
	rope, err := NewRoPE(hd, cfg.NeoX, mustFreq(t, cfg), S)
	if err != nil {
		t.Fatal(err)
	}
	if err := rope.Check(m); err != nil {
		t.Fatal(err)
	}
	var always []int32
	for p := range sink {
		always = append(always, int32(p))
	}
	for p := S - window; p < S; p++ {
		always = append(always, int32(p))
	}
	order := make([]int32, 0, S)
	for p := sink; p < S-window; p++ {
		order = append(order, int32(p))
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	n := len(order)
	q = &sparse.Context{Tokens: make([]int32, S), Layers: make([][]sparse.Head, cfg.Layers),
		Thresholds: []sparse.Threshold{{Budget: 0.5, Fraction: 0.5, LogTau: []float32{-2.5}}}}
	ref32 = &sparse.Context{Tokens: q.Tokens, Layers: make([][]sparse.Head, cfg.Layers), Thresholds: q.Thresholds}
	ref16 = &sparse.Context{Tokens: q.Tokens, Layers: make([][]sparse.Head, cfg.Layers), Thresholds: q.Thresholds}
	for l := range cfg.Layers {
		for range cfg.KVHeads {
			pre := randRows(rng, S, hd) // keys before RoPE, by position
			vals := randRows(rng, S, hd)
			rows := func(src []float32, at []int32) []float32 {
				out := make([]float32, len(at)*hd)
				for i, p := range at {
					copy(out[i*hd:(i+1)*hd], src[int(p)*hd:])
				}
				return out
			}
			ranges, _, err := Ranges(pre[sink*hd:], hd, PerChannel, 0.01)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := Quantize(rows(pre, order), hd, Params{Type: kt, Axis: PerChannel, Ranges: ranges, Pos: order, RoPE: rope})
			if err != nil {
				t.Fatal(err)
			}
			values, err := Quantize(rows(vals, order), hd, Params{Type: vt, Axis: PerToken, Outliers: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			win := always[sink:]
			wk, err := Quantize(rows(pre, win), hd, Params{Type: kt, Axis: PerChannel, Ranges: ranges, Pos: win, RoPE: rope})
			if err != nil {
				t.Fatal(err)
			}
			wv, err := Quantize(rows(vals, win), hd, Params{Type: vt, Axis: PerToken, Outliers: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			sinkK := rows(pre, always[:sink])
			for i := range sink {
				m.Rotate(sinkK[i*hd:(i+1)*hd], i)
			}
			sk := sparse.NewF16Rows(hd, sinkK)
			sv := sparse.NewF16Rows(hd, rows(vals, always[:sink]))
			ak, err := Join(sk, wk)
			if err != nil {
				t.Fatal(err)
			}
			av, err := Join(sv, wv)
			if err != nil {
				t.Fatal(err)
			}
			dk := dequantized(keys, hd)
			var starts []int32
			for s := 0; s < n; s += leaf {
				starts = append(starts, int32(s))
			}
			starts = append(starts, int32(n))
			cents := make([]float32, (len(starts)-1)*hd)
			for j := range len(starts) - 1 {
				for i := starts[j]; i < starts[j+1]; i++ {
					kernels.Axpy(1/float32(starts[j+1]-starts[j]), dk[int(i)*hd:(int(i)+1)*hd], cents[j*hd:(j+1)*hd])
				}
			}
			tree, err := index.New(hd, []index.Level{{Centroids: cents, Start: starts}}, slices.Clone(order))
			if err != nil {
				t.Fatal(err)
			}
			head := sparse.Head{Tree: tree, Keys: keys, Values: values, Always: always, AlwaysK: ak, AlwaysV: av}
			q.Layers[l] = append(q.Layers[l], head)
			f32 := func(r sparse.Rows) sparse.Rows { return &f32Rows{hd, dequantized(r, hd)} }
			f16 := func(r sparse.Rows) sparse.Rows { return sparse.NewF16Rows(hd, dequantized(r, hd)) }
			cat := func(a, b []float32) []float32 { return append(slices.Clone(a), b...) }
			akd := cat(dequantized(sk, hd), dequantized(wk, hd))
			avd := cat(dequantized(sv, hd), dequantized(wv, hd))
			ref32.Layers[l] = append(ref32.Layers[l], sparse.Head{Tree: tree, Keys: f32(keys), Values: f32(values), Always: always,
				AlwaysK: &f32Rows{hd, akd}, AlwaysV: &f32Rows{hd, avd}})
			ref16.Layers[l] = append(ref16.Layers[l], sparse.Head{Tree: tree, Keys: f16(keys), Values: f16(values), Always: always,
				AlwaysK: sparse.NewF16Rows(hd, akd), AlwaysV: sparse.NewF16Rows(hd, avd)})
		}
	}
	return q, ref32, ref16
}

func mustFreq(t testing.TB, cfg *model.Config) []float64 {
	t.Helper()
	f, err := Frequencies(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSessionQuantized: a sparse.Session over quantized rows attends as one over the
// same rows decoded to f32 (tight) or f16 (half-precision tolerance), dense and sparse,
// for one token and for a batch.
func TestSessionQuantized(t *testing.T) {
	m, err := model.Load(modeltest.Open(t, modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Vocab: 300, Context: 1024}))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	nf3, _ := NormalFloat(3)
	int2, _ := Uniform(2)
	qc, c32, c16 := quantizedContext(t, rng, m, 700, 1, 20, 13, nf3, int2)
	pool := kernels.NewPool(2)
	cfg := &m.Config
	qd := cfg.Heads * cfg.HeadDim
	for _, budget := range []float64{1, 0.5} {
		sq, err := sparse.NewSession(qc, m, pool, budget)
		if err != nil {
			t.Fatal(err)
		}
		s32, _ := sparse.NewSession(c32, m, pool, budget)
		s16, _ := sparse.NewSession(c16, m, pool, budget)
		for _, n := range []int{1, 5, 20} {
			q := randVec(rng, n*qd)
			kernels.Scale(q, 0.05)
			run := func(s *sparse.Session) ([]float32, []float32) {
				out, lse := make([]float32, n*qd), make([]float32, n*cfg.Heads)
				s.Attend(1, q, n, out, lse)
				return out, lse
			}
			oq, lq := run(sq)
			o32, l32 := run(s32)
			o16, l16 := run(s16)
			for i := range oq {
				if d := math.Abs(float64(oq[i] - o32[i])); d > 1e-4*(1+math.Abs(float64(o32[i]))) {
					t.Fatalf("budget %v n %d: output %d: %v, f32 rows %v", budget, n, i, oq[i], o32[i])
				}
				if d := math.Abs(float64(oq[i] - o16[i])); d > 0.1 { // values are a few units: f16 keys shift scores
					t.Fatalf("budget %v n %d: output %d: %v, f16 rows %v", budget, n, i, oq[i], o16[i])
				}
			}
			for i := range lq {
				if d := math.Abs(float64(lq[i] - l32[i])); d > 1e-4*(1+math.Abs(float64(l32[i]))) {
					t.Fatalf("budget %v n %d: lse %d: %v, f32 rows %v", budget, n, i, lq[i], l32[i])
				}
				if d := math.Abs(float64(lq[i] - l16[i])); d > 1e-2*(1+math.Abs(float64(l16[i]))) {
					t.Fatalf("budget %v n %d: lse %d: %v, f16 rows %v", budget, n, i, lq[i], l16[i])
				}
			}
			if budget < 1 && sq.Stats().KeysRead >= sq.Stats().Keys {
				t.Fatalf("budget %v read every key", budget)
			}
		}
	}
}

// TestBytes counts storage in the stored form: codes, ranges (2 bytes a row for values),
// outliers (a gap byte, or more across long gaps, and a half float) and the levels of
// quantized rows, 2 bytes a value of f16 rows, parts of joined rows.
func TestBytes(t *testing.T) {
	nf3, _ := NormalFloat(3)
	x := randRows(rand.New(rand.NewPCG(1, 9)), 100, 16)
	k, err := Quantize(x, 16, Params{Type: nf3, Axis: PerChannel, Outliers: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Quantize(x, 16, Params{Type: nf3, Axis: PerToken, Outliers: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	codes := 100 * 6 // 16 codes of 3 bits per row
	gaps := func(r *Rows) int { return len(EncodeOutliers(r.OutStart, r.OutIndex, r.Dim)) }
	if want := codes + 16*8 + gaps(k) + 2*k.Outliers() + 8*4; Bytes(k) != want || gaps(k) < k.Outliers() { // 8 levels
		t.Errorf("keys: %d bytes, want %d", Bytes(k), want)
	}
	if want := codes + 100*2 + gaps(v) + 2*v.Outliers() + 8*4; Bytes(v) != want || gaps(v) < v.Outliers() {
		t.Errorf("values: %d bytes, want %d", Bytes(v), want)
	}
	f := sparse.NewF16Rows(16, x[:32])
	j, err := Join(f, k)
	if err != nil {
		t.Fatal(err)
	}
	if Bytes(j) != 64+Bytes(k) || Outliers(j) != k.Outliers() || Outliers(f) != 0 {
		t.Errorf("joined: %d bytes, %d outliers", Bytes(j), Outliers(j))
	}
	// Joined rows decode part by part: rows 1..5 are f16 rows 1 and the key rows 0..3.
	got := make([]float32, 5*16)
	j.Dequantize(got, 1, 6)
	want := make([]float32, 5*16)
	kernels.F16ToF32Slice(want[:16], f.Data[16:32])
	k.Dequantize(want[16:], 0, 4)
	if !slices.Equal(got, want) {
		t.Errorf("joined rows 1..5 decode to %v, want %v", got, want)
	}
	if k.Outliers() != 2*16 { // round(0.01·100) = 1 per end per channel
		t.Errorf("%d key outliers, want 32", k.Outliers())
	}
}
