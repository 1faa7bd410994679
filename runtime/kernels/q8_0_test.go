package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
)

// q8FamilyTypes are the block-of-32 formats whose decode products use the 8-bit
// activation, with the largest magnitude of their unsigned or signed integer values.
var q8FamilyTypes = []struct {
	t    gguf.Type
	qmax float64
}{
	{gguf.TypeQ8_0, 127},
	{gguf.TypeQ4_0, 8},
	{gguf.TypeQ4_1, 15},
	{gguf.TypeQ5_0, 16},
	{gguf.TypeQ5_1, 31},
}

// q8fRandom returns n values, roughly normal with scale sigma, with a few outliers.
func q8fRandom(rng *rand.Rand, n int, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * sigma)
		if rng.IntN(97) == 0 {
			x[i] *= 8
		}
	}
	return x
}

// q8fEdgeBlocks are single blocks that exercise corner cases of the quantizers.
func q8fEdgeBlocks() [][]float32 {
	zero := make([]float32, 32)
	one := make([]float32, 32)
	ramp := make([]float32, 32)
	neg := make([]float32, 32)
	sym := make([]float32, 32)
	for j := range 32 {
		one[j] = 1
		ramp[j] = float32(j) - 15.5
		neg[j] = -float32(j) / 7
		sym[j] = float32(1 - 2*(j&1)) // ±1: the clamp edge of Q4_0 and Q5_0
	}
	tiny := make([]float32, 32)
	tiny[3] = 1e-6
	return [][]float32{zero, one, ramp, neg, sym, tiny}
}

// TestQ8FamilyRoundTrip checks that each level's dequant equals the reference exactly,
// and quantize→dequantize: every value within half a step of
// the original (a whole step where ggml's quantizer clamps the extreme opposite to the
// block's largest-magnitude value), allowing for the f16 rounding of d and m.
func TestQ8FamilyRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range q8FamilyTypes {
		t.Run(tc.t.String(), func(t *testing.T) {
			withFeatures(t, func(t *testing.T) {
				src := q8fRandom(rng, 32*37, 0.5)
				for _, b := range q8fEdgeBlocks() {
					src = append(src, b...)
				}
				enc, err := Quantize(tc.t, src)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]float32, len(src)+3)
				for i := range got {
					got[i] = 1234.5
				}
				formats[tc.t].dequant(got[:len(src)], enc)
				for i := len(src); i < len(got); i++ {
					if got[i] != 1234.5 {
						t.Fatalf("dequant wrote past its output at %d", i)
					}
				}
				ref := make([]float32, len(src))
				dequantQ8FamilyRef(tc.t, ref, enc)
				for i, v := range ref {
					if got[i] != v {
						t.Fatalf("value %d: dequant gives %g, the reference %g", i, got[i], v)
					}
				}
				bb := tc.t.BlockBytes()
				for i, want := range src {
					blk := enc[i/32*bb:]
					d := math.Abs(float64(blockF16(blk)))
					var m float64
					if tc.t == gguf.TypeQ4_1 || tc.t == gguf.TypeQ5_1 {
						m = math.Abs(float64(blockF16(blk[2:])))
					}
					// f16 keeps 11 significant bits; below 2^-14 its step is 2^-24
					slack := tc.qmax*(d/1024+0x1p-25) + m/1024 + 0x1p-25 + 1e-7
					bound := d/2 + slack
					if tc.t == gguf.TypeQ4_0 || tc.t == gguf.TypeQ5_0 {
						// the positive extreme after scaling (q would be 2*qmax) clamps down a step
						if math.Abs(float64(want)) > (tc.qmax-0.5)*d+slack {
							bound = d + slack
						}
					}
					if e := math.Abs(float64(got[i] - want)); e > bound || math.IsNaN(float64(got[i])) {
						t.Fatalf("value %d: got %g, want %g ± %g (d %g)", i, got[i], want, bound, d)
					}
				}
			})
		})
	}
}

// TestQ8ActQuantize compares the activation quantizer of each level with the reference
// (bit-exact) and checks the reference's own bound |q·d - x| <= d/2.
func TestQ8ActQuantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	withFeatures(t, func(t *testing.T) {
		for _, nb := range []int{0, 1, 2, 3, 5, 12, 32, 33} {
			x := q8fRandom(rng, nb*32, 1)
			if nb == 3 {
				copy(x[32:], make([]float32, 32)) // an all-zero block
			}
			var want Activation
			want.F32 = x
			want.Q8 = make([]int8, nb*32)
			want.Q8Scale = make([]float32, nb)
			want.Q8Sum = make([]int32, nb)
			quantizeQ8ActRef(want.Q8, want.Q8Scale, want.Q8Sum, x)

			q := make([]int8, nb*32+5)
			sc := make([]float32, nb+5)
			sum := make([]int32, nb+5)
			for i := range q {
				q[i] = 99
			}
			for i := range sc {
				sc[i], sum[i] = 99, 99
			}
			quantizeQ8Act(q[:nb*32], sc[:nb], sum[:nb], x)
			for i := nb * 32; i < len(q); i++ {
				if q[i] != 99 {
					t.Fatalf("%d blocks: wrote q past the end", nb)
				}
			}
			for i := nb; i < len(sc); i++ {
				if sc[i] != 99 || sum[i] != 99 {
					t.Fatalf("%d blocks: wrote scale or sum past the end", nb)
				}
			}
			for b := range nb {
				if sc[b] != want.Q8Scale[b] || sum[b] != want.Q8Sum[b] {
					t.Fatalf("%d blocks: block %d: scale %g sum %d, want %g %d", nb, b, sc[b], sum[b], want.Q8Scale[b], want.Q8Sum[b])
				}
				for j := range 32 {
					i := b*32 + j
					if q[i] != want.Q8[i] {
						t.Fatalf("%d blocks: value %d: q %d, want %d (x %g)", nb, i, q[i], want.Q8[i], x[i])
					}
					if e := math.Abs(float64(want.Q8[i])*float64(want.Q8Scale[b]) - float64(x[i])); e > float64(want.Q8Scale[b])*0.5001 {
						t.Fatalf("value %d: error %g exceeds half a step %g", i, e, want.Q8Scale[b]/2)
					}
				}
			}
		}
		// prepare reuses the activation's slices when they are large enough
		a := &Activation{F32: q8fRandom(rng, 64, 1)}
		prepareQ8(a)
		p := &a.Q8[0]
		a.F32 = a.F32[:32]
		prepareQ8(a)
		if &a.Q8[0] != p || len(a.Q8) != 32 || len(a.Q8Scale) != 1 || len(a.Q8Sum) != 1 {
			t.Fatalf("prepare did not reuse its buffers: len %d %d %d", len(a.Q8), len(a.Q8Scale), len(a.Q8Sum))
		}
	})
}

// q8fMatrix returns rows x cols random weights encoded as t, and their decoded values.
func q8fMatrix(t *testing.T, rng *rand.Rand, typ gguf.Type, rows, cols int) ([]byte, []float32) {
	t.Helper()
	src := q8fRandom(rng, rows*cols, 0.05)
	enc, err := Quantize(typ, src)
	if err != nil {
		t.Fatal(err)
	}
	dec := make([]float32, len(src))
	dequantQ8FamilyRef(typ, dec, enc)
	return enc, dec
}

// dequantQ8FamilyRef decodes with the reference decoder of typ, whatever is installed.
func dequantQ8FamilyRef(typ gguf.Type, dst []float32, src []byte) {
	switch typ {
	case gguf.TypeQ8_0:
		dequantQ8_0Ref(dst, src)
	case gguf.TypeQ4_0:
		dequantQ4_0Ref(dst, src)
	case gguf.TypeQ5_0:
		dequantQ5_0Ref(dst, src)
	default:
		formats[typ].dequant(dst, src)
	}
}

// dotRowsQ8FamilyRef is the reference dotRows of typ, whatever is installed.
func dotRowsQ8FamilyRef(typ gguf.Type) func(dst []float32, w []byte, rowBytes int, a *Activation) {
	return map[gguf.Type]func(dst []float32, w []byte, rowBytes int, a *Activation){
		gguf.TypeQ8_0: dotRowsQ8_0Ref,
		gguf.TypeQ4_0: dotRowsQ4_0Ref,
		gguf.TypeQ4_1: dotRowsQ4_1Ref,
		gguf.TypeQ5_0: dotRowsQ5_0Ref,
		gguf.TypeQ5_1: dotRowsQ5_1Ref,
	}[typ]
}

// q8fPrepared returns x prepared by the reference activation quantizer.
func q8fPrepared(x []float32) *Activation {
	nb := len(x) / 32
	a := &Activation{F32: x, Q8: make([]int8, nb*32), Q8Scale: make([]float32, nb), Q8Sum: make([]int32, nb)}
	quantizeQ8ActRef(a.Q8, a.Q8Scale, a.Q8Sum, x)
	return a
}

// TestQ8FamilyDotRows compares each level's dotRows with the reference on the same
// 8-bit activation. Integer block sums are exact in both, so they differ only by float
// rounding: the tolerance is 1e-5 of Σ|w·x| per row. Row counts cover the eight-row,
// four-row and one-row loops of the assembly and their combinations.
func TestQ8FamilyDotRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range q8FamilyTypes {
		t.Run(tc.t.String(), func(t *testing.T) {
			withFeatures(t, func(t *testing.T) {
				for _, sz := range []struct{ rows, blocks int }{{1, 1}, {3, 2}, {4, 1}, {5, 3}, {7, 12}, {8, 5}, {12, 2}, {15, 3}, {17, 32}, {33, 4}, {0, 3}} {
					cols := sz.blocks * 32
					enc, dec := q8fMatrix(t, rng, tc.t, sz.rows, cols)
					if tc.t == gguf.TypeQ8_0 {
						// ggml's quantizer never writes -128, but the format allows it
						for i := 2; i < len(enc); i += 7 * q8_0BlockBytes / 3 {
							if i%q8_0BlockBytes >= 2 {
								enc[i] = 0x80
							}
						}
						dequantQ8_0Ref(dec, enc)
					}
					x := q8fRandom(rng, cols, 1)
					a := q8fPrepared(x)
					want := make([]float32, sz.rows)
					dotRowsQ8FamilyRef(tc.t)(want, enc, len(enc)/max(sz.rows, 1), a)
					got := make([]float32, sz.rows+4)
					for i := range got {
						got[i] = -777
					}
					rb, _ := tc.t.RowBytes(cols)
					formats[tc.t].dotRows(got[:sz.rows], enc, rb, a)
					for i := sz.rows; i < len(got); i++ {
						if got[i] != -777 {
							t.Fatalf("%dx%d: dotRows wrote past dst", sz.rows, cols)
						}
					}
					for r := range sz.rows {
						var mag float64
						for j := range cols {
							mag += math.Abs(float64(dec[r*cols+j]) * float64(x[j]))
						}
						if e := math.Abs(float64(got[r] - want[r])); e > 1e-5*mag+1e-30 || math.IsNaN(float64(got[r])) {
							t.Fatalf("%dx%d row %d: got %g, want %g (Σ|wx| %g)", sz.rows, cols, r, got[r], want[r], mag)
						}
					}
				}
			})
		})
	}
}

// TestQ8FamilyDotAccuracy bounds the error of the 8-bit activation against the exact f32
// dot of the decoded weights: each activation value moves by at most half its block's
// step d_x, so |error| <= Σ_b d_x(b)/2 · Σ_{j in b} |w_j| (plus float rounding).
// It also reports the mean relative error, about 1e-3 on random data.
func TestQ8FamilyDotAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range q8FamilyTypes {
		t.Run(tc.t.String(), func(t *testing.T) {
			withFeatures(t, func(t *testing.T) {
				const rows, cols = 41, 384
				enc, dec := q8fMatrix(t, rng, tc.t, rows, cols)
				x := q8fRandom(rng, cols, 1)
				a := &Activation{F32: x}
				formats[tc.t].prepare(a)
				got := make([]float32, rows)
				rb, _ := tc.t.RowBytes(cols)
				formats[tc.t].dotRows(got, enc, rb, a)
				var sumRel float64
				for r := range rows {
					var exact, bound, mag float64
					for j := range cols {
						w := float64(dec[r*cols+j])
						exact += w * float64(x[j])
						mag += math.Abs(w * float64(x[j]))
						bound += math.Abs(w) * float64(a.Q8Scale[j/32]) / 2
					}
					e := math.Abs(float64(got[r]) - exact)
					if e > bound+1e-5*mag {
						t.Fatalf("row %d: got %g, exact %g: error %g above bound %g", r, got[r], exact, e, bound)
					}
					sumRel += e / mag
				}
				t.Logf("mean |error|/Σ|w·x| = %.2g", sumRel/rows)
			})
		})
	}
}

// TestQ8FamilyNoAlloc checks that MatMul over the Q8_0 family allocates nothing once
// the pool's scratch has grown: prepare reuses the activation's buffers.
func TestQ8FamilyNoAlloc(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	withFeatures(t, func(t *testing.T) {
		for _, tc := range q8FamilyTypes {
			const rows, cols = 40, 96
			enc, err := Quantize(tc.t, q8fRandom(rand.New(rand.NewPCG(11, 12)), rows*cols, 0.1))
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewMatrix(tc.t, rows, cols, enc)
			if err != nil {
				t.Fatal(err)
			}
			x := q8fRandom(rand.New(rand.NewPCG(13, 14)), 40*cols, 1)
			dst := make([]float32, 40*rows)
			for _, n := range []int{1, 3, 40} {
				MatMul(p, dst, m, x, n) // grows scratch once
				if a := testing.AllocsPerRun(20, func() { MatMul(p, dst, m, x, n) }); a != 0 {
					t.Errorf("%v n=%d: MatMul allocates %v times per call", tc.t, n, a)
				}
			}
		}
	})
}
