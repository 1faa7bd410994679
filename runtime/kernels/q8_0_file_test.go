package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/testfiles"
)

// q8fOpen opens a shared model file, closing it when the test ends.
func q8fOpen(t testing.TB, name string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(testfiles.Shared(t, "models", "gocode-22m", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// relRMS returns sqrt(Σ(got-want)² / Σwant²).
func relRMS(got, want []float32) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	return math.Sqrt(num / den)
}

// TestQ8FamilyRealFiles decodes the Q8_0 and Q5_0 tensors of llama.cpp's quantizations
// of gocode-22m and compares them with the F16 originals, then checks MatVec against
// the f32 product of the F16 weights.
func TestQ8FamilyRealFiles(t *testing.T) {
	ref := q8fOpen(t, "gocode-22m.gguf")
	limits := map[gguf.Type]float64{gguf.TypeQ8_0: 0.01, gguf.TypeQ5_0: 0.05, gguf.TypeQ4_0: 0.1, gguf.TypeQ4_1: 0.1, gguf.TypeQ5_1: 0.05}
	pool := NewPool(2)
	defer pool.Close()
	rng := rand.New(rand.NewPCG(9, 10))
	for _, name := range []string{"gocode-22m-q8_0.gguf", "gocode-22m-q4_k_m.gguf"} {
		t.Run(name, func(t *testing.T) {
			f := q8fOpen(t, name)
			checked := 0
			for i := range f.Tensors {
				ti := &f.Tensors[i]
				limit, ok := limits[ti.Type]
				if !ok || (testing.Short() && checked >= 6) {
					continue
				}
				checked++
				_, data, err := f.Tensor(ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				ri, rdata, err := ref.Tensor(ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				if ri.Type != gguf.TypeF16 || ri.Elements() != ti.Elements() {
					t.Fatalf("%s: reference is %v %v, quantized %v", ti.Name, ri.Type, ri.Dims, ti.Dims)
				}
				n := int(ti.Elements())
				want := make([]float32, n)
				if err := Dequantize(gguf.TypeF16, want, rdata); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, n)
				passed := t.Run(ti.Name, func(t *testing.T) {
					withFeatures(t, func(t *testing.T) {
						formats[ti.Type].dequant(got, data)
						if e := relRMS(got, want); e > limit || math.IsNaN(e) {
							t.Fatalf("%s (%v): relative RMS error %.4f above %.2f", ti.Name, ti.Type, e, limit)
						}
						rows, cols := int(ti.Rows()), int(ti.Dims[0])
						m, err := NewMatrix(ti.Type, rows, cols, data)
						if err != nil {
							t.Fatal(err)
						}
						x := q8fRandom(rng, cols, 1)
						y := make([]float32, rows)
						MatVec(pool, y, m, x)
						exact := make([]float32, rows)
						for r := range rows {
							var s float64
							for j, v := range want[r*cols : (r+1)*cols] {
								s += float64(v) * float64(x[j])
							}
							exact[r] = float32(s)
						}
						if e := relRMS(y, exact); e > 2*limit || math.IsNaN(e) {
							t.Fatalf("%s (%v): MatVec relative RMS error %.4f above %.2f", ti.Name, ti.Type, e, 2*limit)
						}
						t.Logf("%v: weights relative RMS error %.4f, MatVec %.4f", ti.Type, relRMS(got, want), relRMS(y, exact))
					})
				})
				if !passed {
					break // one failing tensor says enough
				}
			}
			if checked == 0 {
				t.Fatalf("%s has no tensor of the Q8_0 family", name)
			}
		})
	}
}
