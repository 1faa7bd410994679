package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/gguf"
)

// kqTypes are the K-quant formats with their reference functions and the relative RMS
// error their reference encoder reaches on Gaussian data.
var kqTypes = []struct {
	t       gguf.Type
	ref     func(dst []float32, w []byte, rowBytes int, a *Activation)
	deq     func(dst []float32, src []byte)
	maxRRMS float64
}{
	{gguf.TypeQ4_K, dotRowsQ4KRef, dequantQ4K, 0.15},
	{gguf.TypeQ5_K, dotRowsQ5KRef, dequantQ5K, 0.05},
	{gguf.TypeQ6_K, dotRowsQ6KRef, dequantQ6K, 0.03},
}

// kqRandVec returns n values: Gaussian, with an offset, spikes and a few constant
// stretches so that ranges of every sign and zero sub-blocks occur.
func kqRandVec(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for b := 0; b < n; b += 64 {
		switch r.IntN(6) {
		case 0: // positive offset: all values above zero
			for i := b; i < min(n, b+64); i++ {
				x[i] = 3 + x[i]*0.5
			}
		case 1: // zeros
			for i := b; i < min(n, b+32); i++ {
				x[i] = 0
			}
		case 2: // a spike
			x[b] *= 20
		case 3: // negative
			for i := b; i < min(n, b+64); i++ {
				x[i] = -2 - float32(math.Abs(float64(x[i])))
			}
		}
	}
	return x
}

func kqRelRMS(got, want []float32) float64 {
	var num, den float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func TestScaleMinK4RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 1000; it++ {
		var sc, m [8]uint8
		for j := range sc {
			sc[j], m[j] = uint8(r.IntN(64)), uint8(r.IntN(64))
		}
		var b [12]byte
		packScaleMinK4(b[:], &sc, &m)
		sc2, m2 := scaleMinK4(b[:])
		if sc2 != sc || m2 != m {
			t.Fatalf("packed %v %v, unpacked %v %v", sc, m, sc2, m2)
		}
	}
}

func TestKQuantRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tt := range kqTypes {
		for _, nb := range []int{1, 2, 5} {
			t.Run(fmt.Sprintf("%v/%d", tt.t, nb), func(t *testing.T) {
				x := kqRandVec(r, nb*qkK)
				enc, err := Quantize(tt.t, x)
				if err != nil {
					t.Fatal(err)
				}
				y := make([]float32, len(x))
				if err := Dequantize(tt.t, y, enc); err != nil {
					t.Fatal(err)
				}
				e := kqRelRMS(y, x)
				t.Logf("relative RMS error %.4f", e)
				if e > tt.maxRRMS {
					t.Errorf("relative RMS error %.4f > %.4f", e, tt.maxRRMS)
				}
				// Exact zeros and constant blocks survive.
				z := make([]float32, qkK)
				enc, _ = Quantize(tt.t, z)
				_ = Dequantize(tt.t, y[:qkK], enc)
				for i, v := range y[:qkK] {
					if v != 0 {
						t.Fatalf("zero block decodes to %v at %d", v, i)
					}
				}
			})
		}
	}
}

// kqRandBlocks returns n raw super-blocks of t with random bits everywhere except the
// f16 scales, which are set to moderate values (random bits could be Inf or NaN).
func kqRandBlocks(r *rand.Rand, t gguf.Type, n int) []byte {
	bb := t.BlockBytes()
	w := make([]byte, n*bb)
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	for b := 0; b < n; b++ {
		blk := w[b*bb : (b+1)*bb]
		h := func() uint16 { return F32ToF16(float32(r.Float64()*0.01 + 1e-4)) }
		switch t {
		case gguf.TypeQ6_K:
			binary.LittleEndian.PutUint16(blk[208:], h())
		default:
			binary.LittleEndian.PutUint16(blk[0:], h())
			binary.LittleEndian.PutUint16(blk[2:], h())
		}
	}
	return w
}

// TestKQuantDotRows compares every implementation level's dotRows (and prepare) with the
// reference on the same quantized activation, and the reference with the exact f32 dot.
func TestKQuantDotRows(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, tt := range kqTypes {
			f := formats[tt.t]
			for _, nb := range []int{1, 2, 4, 5} {
				for _, rows := range []int{1, 2, 3, 4, 5, 7, 13} {
					for _, raw := range []bool{false, true} {
						name := fmt.Sprintf("%v/blocks%d/rows%d/raw%v", tt.t, nb, rows, raw)
						cols := nb * qkK
						rb := nb * tt.t.BlockBytes()
						var w []byte
						if raw {
							w = kqRandBlocks(r, tt.t, rows*nb)
						} else {
							var err error
							w, err = Quantize(tt.t, kqRandVec(r, rows*cols))
							if err != nil {
								t.Fatal(err)
							}
						}
						x := kqRandVec(r, cols)
						a := &Activation{F32: x}
						f.prepare(a)
						ref := &Activation{F32: x}
						prepareQ8KRefOnly(ref)
						if !kqSameQ8K(a, ref) {
							t.Fatalf("%s: prepare differs from the reference", name)
						}
						want := make([]float32, rows)
						tt.ref(want, w, rb, ref)
						const guard = 12345.5
						got := make([]float32, rows+3)
						for i := range got {
							got[i] = guard
						}
						f.dotRows(got[:rows], w, rb, a)
						for i := rows; i < len(got); i++ {
							if got[i] != guard {
								t.Fatalf("%s: dotRows wrote past dst at %d", name, i)
							}
						}
						row := make([]float32, cols)
						for i := 0; i < rows; i++ {
							// Bound from the magnitudes: float sums in another order.
							tt.deq(row, w[i*rb:(i+1)*rb])
							var mag, exact, vq float64
							for j, v := range row {
								mag += math.Abs(float64(v) * float64(x[j]))
								exact += float64(v) * float64(x[j])
								step := float64(ref.Q8KScale[j/qkK]) // rounding error is uniform in ±step/2
								vq += float64(v) * float64(v) * step * step / 12
							}
							if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*mag+1e-30 {
								t.Errorf("%s row %d: fast %v, reference %v (magnitude %v)", name, i, got[i], want[i], mag)
							}
							// The 8-bit activation adds a sum of independent rounding errors:
							// allow six standard deviations.
							if d := math.Abs(float64(want[i]) - exact); d > 6*math.Sqrt(vq)+1e-5*mag {
								t.Errorf("%s row %d: reference %v, exact f32 dot %v (magnitude %v)", name, i, want[i], exact, mag)
							}
						}
					}
				}
			}
		}
	})
}

// prepareQ8KRefOnly is prepareQ8K with the reference quantizer.
func prepareQ8KRefOnly(a *Activation) {
	saved := quantizeQ8K
	defer func() { quantizeQ8K = saved }()
	quantizeQ8K = quantizeQ8KRef
	prepareQ8K(a)
}

func kqSameQ8K(a, b *Activation) bool {
	if len(a.Q8K) != len(b.Q8K) || len(a.Q8KScale) != len(b.Q8KScale) || len(a.Q8KSum) != len(b.Q8KSum) {
		return false
	}
	for i := range a.Q8K {
		if a.Q8K[i] != b.Q8K[i] {
			return false
		}
	}
	for i := range a.Q8KScale {
		if a.Q8KScale[i] != b.Q8KScale[i] {
			return false
		}
	}
	for i := range a.Q8KSum {
		if a.Q8KSum[i] != b.Q8KSum[i] {
			return false
		}
	}
	return true
}

func TestQuantizeQ8K(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, nb := range []int{0, 1, 3, 8} {
			x := kqRandVec(r, nb*qkK)
			if nb == 3 {
				clear(x[qkK : 2*qkK]) // an all-zero super-block
			}
			if nb == 8 {
				for i := 2 * qkK; i < 3*qkK; i++ { // a subnormal scale: 1/d overflows
					x[i] = float32(r.NormFloat64()) * 1e-39
				}
				for i := 3 * qkK; i < 4*qkK; i++ { // a scale just above it
					x[i] = float32(r.NormFloat64()) * 1e-35
				}
			}
			a, b := &Activation{F32: x}, &Activation{F32: x}
			prepareQ8K(a)
			prepareQ8KRefOnly(b)
			if !kqSameQ8K(a, b) {
				t.Fatalf("%d super-blocks: quantizeQ8K differs from the reference", nb)
			}
			for i, v := range b.Q8K {
				if v == -128 {
					t.Fatalf("value %d quantized to -128", i)
				}
			}
		}
	})
}

// TestKQuantDequant checks that the installed decoders (Matrix.Row and the batched path
// use them) give bit-for-bit the reference's results and stay inside dst.
func TestKQuantDequant(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, tt := range kqTypes {
			for _, nb := range []int{1, 3} {
				w := kqRandBlocks(r, tt.t, nb)
				want := make([]float32, nb*qkK)
				tt.deq(want, w)
				got := make([]float32, nb*qkK+5)
				for i := range got {
					got[i] = -7
				}
				formats[tt.t].dequant(got[:nb*qkK], w)
				for i, v := range got[nb*qkK:] {
					if v != -7 {
						t.Fatalf("%v: dequant wrote past dst at %d", tt.t, nb*qkK+i)
					}
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v value %d: got %v, reference %v", tt.t, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// TestKQuantMatMul runs the public MatMul on K-quant matrices for batches that take the
// per-vector path and the batched (dequantizing) path, against the exact f32 product of
// the decoded weights, on a pool of two threads that is reused across formats.
func TestKQuantMatMul(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, tt := range kqTypes {
			for _, n := range []int{1, 3, 40} {
				const rows, cols = 37, 512
				enc, err := Quantize(tt.t, kqRandVec(r, rows*cols))
				if err != nil {
					t.Fatal(err)
				}
				m, err := NewMatrix(tt.t, rows, cols, enc)
				if err != nil {
					t.Fatal(err)
				}
				w := make([]float32, rows*cols)
				if err := Dequantize(tt.t, w, enc); err != nil {
					t.Fatal(err)
				}
				x := kqRandVec(r, n*cols)
				dst := make([]float32, n*rows+1)
				dst[n*rows] = 99
				MatMul(p, dst[:n*rows], m, x, n)
				if dst[n*rows] != 99 {
					t.Fatalf("%v n=%d: MatMul wrote past dst", tt.t, n)
				}
				for v := 0; v < n; v++ {
					xv := x[v*cols : (v+1)*cols]
					a := &Activation{F32: xv}
					prepareQ8KRefOnly(a)
					for i := 0; i < rows; i++ {
						var exact, mag, vq float64
						for j, wv := range w[i*cols : (i+1)*cols] {
							exact += float64(wv) * float64(xv[j])
							mag += math.Abs(float64(wv) * float64(xv[j]))
							step := float64(a.Q8KScale[j/qkK])
							vq += float64(wv) * float64(wv) * step * step / 12
						}
						got := float64(dst[v*rows+i])
						if d := math.Abs(got - exact); d > 6*math.Sqrt(vq)+1e-5*mag {
							t.Fatalf("%v n=%d vector %d row %d: %v, exact %v", tt.t, n, v, i, got, exact)
						}
					}
				}
			}
		}
	})
}

// TestKQuantNoAlloc checks that MatMul on K-quant matrices does not allocate once the
// pool's activation scratch has grown (prepare reuses the Q8K slices).
func TestKQuantNoAlloc(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	r := rand.New(rand.NewPCG(23, 24))
	for _, tt := range kqTypes {
		const rows, cols = 64, 512
		enc, err := Quantize(tt.t, kqRandVec(r, rows*cols))
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewMatrix(tt.t, rows, cols, enc)
		if err != nil {
			t.Fatal(err)
		}
		x := kqRandVec(r, 8*cols)
		dst := make([]float32, 8*rows)
		for _, n := range []int{1, 8} {
			MatMul(p, dst, m, x, n) // grows scratch once
			if a := testing.AllocsPerRun(20, func() { MatMul(p, dst, m, x, n) }); a != 0 {
				t.Errorf("%v n=%d: MatMul allocates %v times per call", tt.t, n, a)
			}
		}
	}
}

// BenchmarkKQuantMatVec measures single-thread MatVec of a 1024x1024 matrix per format
// and instruction-set level; the bytes are the weight bytes.
func BenchmarkKQuantMatVec(b *testing.B) {
	const rows, cols = 1024, 1024
	r := rand.New(rand.NewPCG(13, 14))
	x := kqRandVec(r, cols)
	p := NewPool(1)
	defer p.Close()
	saved := cpuHas
	defer func() { cpuHas = saved; reinit() }()
	levels := []struct {
		name string
		on   bool
		f    features
	}{
		{"generic", true, features{}},
		{"avx2", saved.AVX2FMA, features{AVX2FMA: true}},
		{"avx512", saved.AVX512VNNI, saved},
	}
	for _, tt := range kqTypes {
		enc, err := Quantize(tt.t, kqRandVec(r, rows*cols))
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewMatrix(tt.t, rows, cols, enc)
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]float32, rows)
		for _, l := range levels {
			if !l.on {
				continue
			}
			b.Run(fmt.Sprintf("%v/%s", tt.t, l.name), func(b *testing.B) {
				cpuHas = l.f
				reinit()
				b.SetBytes(int64(len(enc)))
				for b.Loop() {
					MatVec(p, dst, m, x)
				}
			})
		}
	}
}

// BenchmarkKQuantDotRows measures the kernels alone (no prepare, no pool) on 64 rows of
// 1024 values, which stay in the L2 cache.
func BenchmarkKQuantDotRows(b *testing.B) {
	const rows, cols = 64, 1024
	r := rand.New(rand.NewPCG(15, 16))
	a := &Activation{F32: kqRandVec(r, cols)}
	prepareQ8KRefOnly(a)
	saved := cpuHas
	defer func() { cpuHas = saved; reinit() }()
	for _, tt := range kqTypes {
		enc, err := Quantize(tt.t, kqRandVec(r, rows*cols))
		if err != nil {
			b.Fatal(err)
		}
		rb := len(enc) / rows
		dst := make([]float32, rows)
		for _, l := range []struct {
			name string
			on   bool
			f    features
		}{{"avx2", saved.AVX2FMA, features{AVX2FMA: true}}, {"avx512", saved.AVX512VNNI, saved}} {
			if !l.on {
				continue
			}
			b.Run(fmt.Sprintf("%v/%s", tt.t, l.name), func(b *testing.B) {
				cpuHas = l.f
				reinit()
				f := formats[tt.t]
				b.SetBytes(int64(len(enc)))
				for b.Loop() {
					f.dotRows(dst, enc, rb, a)
				}
			})
		}
	}
}

// BenchmarkQuantizeQ8K measures the activation quantization of 1024 values.
func BenchmarkQuantizeQ8K(b *testing.B) {
	r := rand.New(rand.NewPCG(17, 18))
	a := &Activation{F32: kqRandVec(r, 1024)}
	for b.Loop() {
		prepareQ8K(a)
	}
}

// BenchmarkKQuantDequant measures the installed decoders on 64 super-blocks; the bytes
// are the decoded float32 bytes.
func BenchmarkKQuantDequant(b *testing.B) {
	const nb = 64
	r := rand.New(rand.NewPCG(19, 20))
	for _, tt := range kqTypes {
		w := kqRandBlocks(r, tt.t, nb)
		dst := make([]float32, nb*qkK)
		b.Run(tt.t.String(), func(b *testing.B) {
			f := formats[tt.t]
			b.SetBytes(int64(4 * len(dst)))
			for b.Loop() {
				f.dequant(dst, w)
			}
		})
	}
}

// BenchmarkKQuantMatMul compares, for a batch of 64 vectors on one thread, the batched
// path (decode weight panels to f32, f32 GEMM) with the per-vector int8 dotRows path.
func BenchmarkKQuantMatMul(b *testing.B) {
	const rows, cols, n = 1024, 1024, 64
	r := rand.New(rand.NewPCG(27, 28))
	x := kqRandVec(r, n*cols)
	dst := make([]float32, n*rows)
	p := NewPool(1)
	defer p.Close()
	saved := gemmMinN
	defer func() { gemmMinN = saved }()
	for _, tt := range kqTypes {
		enc, err := Quantize(tt.t, kqRandVec(r, rows*cols))
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewMatrix(tt.t, rows, cols, enc)
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range []struct {
			name string
			minN int
		}{{"gemm", saved}, {"dotrows", math.MaxInt}} {
			b.Run(fmt.Sprintf("%v/%s", tt.t, path.name), func(b *testing.B) {
				gemmMinN = path.minN
				for b.Loop() {
					MatMul(p, dst, m, x, n)
				}
				b.ReportMetric(2*rows*cols*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
