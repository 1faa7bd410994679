package kernels

import (
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
	"squeeze/runtime/testfiles"
)

// TestKQuantRealFile decodes every K-quant tensor of the Q4_K_M reference model, which
// llama.cpp quantized from the F16 file, and compares it with the F16 tensor of the same
// name: a layout mistake shows as an error near 100%, a correct decoder as a few percent.
// It also runs the installed dotRows on some rows of each tensor against the reference.
func TestKQuantRealFile(t *testing.T) {
	qf, err := gguf.Open(testfiles.Shared(t, "models", "gocode-22m", "gocode-22m-q4_k_m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer qf.Close()
	ff, err := gguf.Open(testfiles.Shared(t, "models", "gocode-22m", "gocode-22m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	limits := map[gguf.Type]float64{gguf.TypeQ4_K: 0.09, gguf.TypeQ5_K: 0.05, gguf.TypeQ6_K: 0.03}
	seen := map[gguf.Type]int{}
	for _, ti := range qf.Tensors {
		limit, ok := limits[ti.Type]
		if !ok {
			continue
		}
		seen[ti.Type]++
		t.Run(ti.Name, func(t *testing.T) {
			_, qdata, err := qf.Tensor(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			fi, fdata, err := ff.Tensor(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			n := int(ti.Elements())
			if int(fi.Elements()) != n {
				t.Fatalf("F16 tensor has %d elements, quantized %d", fi.Elements(), n)
			}
			want := make([]float32, n)
			if err := Dequantize(fi.Type, want, fdata); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, n)
			if err := Dequantize(ti.Type, got, qdata); err != nil {
				t.Fatal(err)
			}
			e := kqRelRMS(got, want)
			t.Logf("%v %v: relative RMS error %.4f", ti.Type, ti.Dims, e)
			if e > limit {
				t.Errorf("%v relative RMS error %.4f > %.4f", ti.Type, e, limit)
			}
			kqCheckRows(t, ti, qdata, want)
		})
	}
	if seen[gguf.TypeQ4_K] == 0 || seen[gguf.TypeQ6_K] == 0 {
		t.Errorf("the Q4_K_M file should hold Q4_K and Q6_K tensors; found %v", seen)
	}
}

// kqCheckRows compares dotRows at every implementation level with the reference on the
// first rows of a real tensor.
func kqCheckRows(t *testing.T, ti gguf.TensorInfo, qdata []byte, f32 []float32) {
	cols := int(ti.Dims[0])
	rows := min(int(ti.Rows()), 37)
	rb, err := ti.Type.RowBytes(cols)
	if err != nil {
		t.Fatal(err)
	}
	var ref func([]float32, []byte, int, *Activation)
	for _, tt := range kqTypes {
		if tt.t == ti.Type {
			ref = tt.ref
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	x := kqRandVec(r, cols)
	a := &Activation{F32: x}
	prepareQ8KRefOnly(a)
	want := make([]float32, rows)
	ref(want, qdata[:rows*rb], rb, a)
	withFeatures(t, func(t *testing.T) {
		got := make([]float32, rows)
		formats[ti.Type].dotRows(got, qdata[:rows*rb], rb, a)
		for i := range got {
			var mag float64
			for j, v := range f32[i*cols : (i+1)*cols] {
				mag += float64(abs32(v * x[j]))
			}
			if d := float64(abs32(got[i] - want[i])); d > 1e-5*mag {
				t.Errorf("row %d: %v, reference %v", i, got[i], want[i])
			}
		}
	})
}
