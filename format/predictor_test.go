package format

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"squeeze/runtime/earlyexit"
	"squeeze/runtime/kernels"
)

// testPredictor returns a checked predictor of rank r for a model of width dim.
func testPredictor(t testing.TB, layer, dim, r int, seed uint64) *earlyexit.Predictor {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	p := &earlyexit.Predictor{Layer: layer, Dim: dim, Rank: r, Bias: vec(dim),
		Scores: []earlyexit.Score{{Layer: 1, Acceptance: 0.25, Raw: 0.125}, {Layer: layer, Acceptance: 0.5, Raw: 0.375}}}
	switch {
	case r == dim:
		p.Full = vec(dim * dim)
	case r > 0:
		p.A, p.B = vec(r*dim), vec(dim*r)
	}
	for _, m := range [][]float32{p.Full, p.A, p.B} { // the map is stored in half floats
		for i, v := range m {
			m[i] = kernels.F16ToF32(kernels.F32ToF16(v))
		}
	}
	if err := p.Check(nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// samePredictor fails unless a and b hold the same values.
func samePredictor(t *testing.T, a, b *earlyexit.Predictor) {
	t.Helper()
	if a.Layer != b.Layer || a.Dim != b.Dim || a.Rank != b.Rank || !reflect.DeepEqual(a.Scores, b.Scores) {
		t.Fatalf("predictor %d/%d/%d %+v, want %d/%d/%d %+v", b.Layer, b.Dim, b.Rank, b.Scores, a.Layer, a.Dim, a.Rank, a.Scores)
	}
	for _, v := range [][2][]float32{{a.Bias, b.Bias}, {a.Full, b.Full}, {a.A, b.A}, {a.B, b.B}} {
		if len(v[0]) != len(v[1]) {
			t.Fatalf("lengths %d and %d", len(v[0]), len(v[1]))
		}
		for i := range v[0] {
			if math.Float32bits(v[0][i]) != math.Float32bits(v[1][i]) {
				t.Fatalf("value %d: %v, want %v", i, v[1][i], v[0][i])
			}
		}
	}
}

// TestPredictorRoundTrip writes artifacts with predictors of every form (and without
// one) and reads them back.
func TestPredictorRoundTrip(t *testing.T) {
	a := testArtifact(t, 3, 2, 8, 40, 1)
	dim := a.Header.Model.Dim
	for _, p := range []*earlyexit.Predictor{nil, testPredictor(t, 2, dim, dim, 1), testPredictor(t, 1, dim, 3, 2), testPredictor(t, 2, dim, 0, 3)} {
		a.Predictor = p
		path := filepath.Join(t.TempDir(), "a.sqz")
		if err := WriteArtifact(path, a); err != nil {
			t.Fatal(err)
		}
		b, err := ReadArtifact(path)
		if err != nil {
			t.Fatal(err)
		}
		if p == nil {
			if b.Predictor != nil {
				t.Errorf("an artifact without a predictor read back with one")
			}
		} else {
			samePredictor(t, p, b.Predictor)
			if err := b.Predictor.Check(nil); err != nil {
				t.Errorf("the read predictor fails Check: %v", err)
			}
		}
		b.Close()
	}
}

// TestPredictorCorrupt checks that damaged or inconsistent predictor sections are
// refused with ErrCorrupt.
func TestPredictorCorrupt(t *testing.T) {
	a := testArtifact(t, 3, 2, 8, 40, 1)
	h := &a.Header
	dim := h.Model.Dim
	good := func() *earlyexit.Predictor { return testPredictor(t, 2, dim, 3, 4) }
	tests := []struct {
		name string
		edit func(p *earlyexit.Predictor)
		raw  func(b []byte) []byte
	}{
		{name: "depth past the model", edit: func(p *earlyexit.Predictor) { p.Layer = 3 }},
		{name: "depth 0", edit: func(p *earlyexit.Predictor) { p.Layer = 0 }},
		{name: "another width", edit: func(p *earlyexit.Predictor) { p.Dim = dim + 1 }},
		{name: "rank above the width", edit: func(p *earlyexit.Predictor) { p.Rank = dim + 1 }},
		{name: "short factor", edit: func(p *earlyexit.Predictor) { p.A = p.A[:4] }},
		{name: "NaN", edit: func(p *earlyexit.Predictor) { p.Bias[1] = float32(math.NaN()) }},
		{name: "score out of range", edit: func(p *earlyexit.Predictor) { p.Scores[0].Acceptance = 2 }},
		{name: "score depth 0", edit: func(p *earlyexit.Predictor) { p.Scores[0].Layer = 0 }},
		{name: "truncated", raw: func(b []byte) []byte { return b[:len(b)-3] }},
		{name: "trailing bytes", raw: func(b []byte) []byte { return append(b, 0) }},
		{name: "empty", raw: func(b []byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			if tt.edit != nil {
				tt.edit(p)
			}
			var e Encoder
			encodePredictor(&e, p)
			b := e.Bytes()
			if tt.raw != nil {
				b = tt.raw(b)
			}
			if _, err := decodePredictor(NewDecoder(SectionPredictor, b), h); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decode: %v, want ErrCorrupt", err)
			}
		})
	}
	var e Encoder
	encodePredictor(&e, good())
	if _, err := decodePredictor(NewDecoder(SectionPredictor, e.Bytes()), h); err != nil {
		t.Errorf("the good predictor: %v", err)
	}
}

// FuzzPredictorSection decodes arbitrary predictor sections: no panic, and every error
// wraps ErrCorrupt.
func FuzzPredictorSection(f *testing.F) {
	a := testArtifact(f, 3, 2, 2, 10, 1)
	h := &a.Header
	for i, r := range []int{0, 2, h.Model.Dim} {
		var e Encoder
		encodePredictor(&e, testPredictor(f, 1+i%2, h.Model.Dim, r, uint64(i)))
		f.Add(e.Bytes())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodePredictor(NewDecoder(SectionPredictor, data), h)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v wraps no ErrCorrupt", err)
			}
			return
		}
		if err := p.Check(nil); err != nil {
			t.Fatalf("a decoded predictor fails Check: %v", err)
		}
	})
}
