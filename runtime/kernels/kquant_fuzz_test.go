package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
)

// FuzzKQuantBlocks feeds arbitrary bytes (any scales, including f16 Inf and NaN) to the
// K-quant decoders and products: nothing may panic, the installed decoder must equal the
// reference bit for bit, and the installed dotRows must agree with the reference (both
// non-finite, or close).
func FuzzKQuantBlocks(f *testing.F) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, tt := range kqTypes {
		f.Add(uint8(tt.t), kqRandBlocks(r, tt.t, 2))
	}
	f.Add(uint8(gguf.TypeQ6_K), make([]byte, 3*q6KBytes))
	x := kqRandVec(r, 4*qkK)
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		var tt = kqTypes[int(typ)%len(kqTypes)]
		bb := tt.t.BlockBytes()
		nb := min(len(data)/bb, 4)
		if nb == 0 {
			return
		}
		w := data[:nb*bb]
		want := make([]float32, nb*qkK)
		tt.deq(want, w)
		got := make([]float32, nb*qkK)
		formats[tt.t].dequant(got, w)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Fatalf("%v value %d: decoder %v, reference %v", tt.t, i, got[i], want[i])
			}
		}
		a := &Activation{F32: x[:nb*qkK]}
		formats[tt.t].prepare(a)
		var dw, dr [1]float32
		formats[tt.t].dotRows(dw[:], w, nb*bb, a)
		tt.ref(dr[:], w, nb*bb, a)
		g, e := float64(dw[0]), float64(dr[0])
		finite := !math.IsInf(g, 0) && !math.IsNaN(g)
		if finite != (!math.IsInf(e, 0) && !math.IsNaN(e)) {
			t.Fatalf("%v: dotRows %v, reference %v", tt.t, g, e)
		}
		var mag float64
		for i, v := range want {
			mag += math.Abs(float64(v) * float64(x[i]))
		}
		if finite && !math.IsInf(mag, 0) && math.Abs(g-e) > 1e-5*mag {
			t.Fatalf("%v: dotRows %v, reference %v (magnitude %v)", tt.t, g, e, mag)
		}
	})
}
