package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// attnRef is the plain causal attention in float64: row r's softmax over the scores of
// positions [0, first+r/per) weights their values.
func attnRef(src *KVHead, hd, rows, per, first int, q []float32) (out, lse []float64) {
	key := func(i, d int) float64 {
		if src.Keys32 != nil {
			return float64(src.Keys32[i*hd+d])
		}
		return float64(F16ToF32(src.Keys16[i*hd+d]))
	}
	val := func(i, d int) float64 {
		if src.Values32 != nil {
			return float64(src.Values32[d*src.Stride+i])
		}
		return float64(F16ToF32(src.Values16[d*src.Stride+i]))
	}
	out = make([]float64, rows*hd)
	lse = make([]float64, rows)
	for r := range rows {
		n := max(0, first+r/per)
		if n == 0 {
			lse[r] = math.Inf(-1)
			continue
		}
		sc := make([]float64, n)
		m := math.Inf(-1)
		for i := range sc {
			for d := range hd {
				sc[i] += float64(q[r*hd+d]) * key(i, d)
			}
			m = max(m, sc[i])
		}
		var sum float64
		for i := range sc {
			sc[i] = math.Exp(sc[i] - m)
			sum += sc[i]
		}
		for i := range sc {
			for d := range hd {
				out[r*hd+d] += sc[i] / sum * val(i, d)
			}
		}
		lse[r] = m + math.Log(sum)
	}
	return out, lse
}

// TestAttend checks the tiled attention against attnRef on random inputs, for f32 and
// f16 sources, head sizes with and without whole panels, several tile sizes, query
// counts, rows per token and causal offsets, at every instruction-set level.
func TestAttend(t *testing.T) {
	cases := []struct{ hd, rows, per, first, n int }{
		{64, 96, 3, 1, 32},      // a block of 32 tokens from position 0
		{64, 96, 3, 300, 331},   // after 300 positions
		{64, 7, 1, 5, 11},       // fewer rows than a micro-kernel tile
		{40, 50, 2, 77, 101},    // head size not a whole panel
		{96, 24, 8, 0, 3},       // the first token sees nothing
		{64, 36, 3, 1000, 1011}, // several tiles before the diagonal
		{128, 13, 13, 64, 64},   // one token's heads, every position
	}
	saved := attnTileKeys
	defer func() { attnTileKeys = saved }()
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		var s AttnScratch
		var kv AttnKV
		for _, tile := range []int{32, 64, 256} {
			attnTileKeys = tile
			for _, c := range cases {
				for _, f16 := range []bool{false, true} {
					for _, withLSE := range []bool{false, true} {
						name := fmt.Sprintf("tile%d/hd%d/rows%d/per%d/first%d/n%d/f16=%v/lse=%v", tile, c.hd, c.rows, c.per, c.first, c.n, f16, withLSE)
						stride := c.n + 5
						keys := randF32(r, c.n*c.hd)
						vals := randF32(r, c.hd*stride)
						src := &KVHead{Keys32: keys, Values32: vals, Stride: stride}
						if f16 {
							src = &KVHead{Keys16: make([]uint16, len(keys)), Values16: make([]uint16, len(vals)), Stride: stride}
							F32ToF16Slice(src.Keys16, keys)
							F32ToF16Slice(src.Values16, vals)
						}
						q := randF32(r, c.rows*c.hd)
						Scale(q, 0.5)
						kv.Reset(c.hd, c.n)
						half := kv.Panels() / 2 // packed in two pieces, as threads do
						kv.Pack(src, half, kv.Panels())
						kv.Pack(src, 0, half)
						out := make([]float32, c.rows*c.hd+1)
						out[len(out)-1] = 42
						var lse []float32
						if withLSE {
							lse = make([]float32, c.rows)
						}
						s.Attend(&kv, q, c.rows, c.per, c.first, out, lse)
						wantOut, wantLSE := attnRef(src, c.hd, c.rows, c.per, c.first, q)
						if out[len(out)-1] != 42 {
							t.Fatalf("%s: wrote past the output", name)
						}
						for i, w := range wantOut {
							if math.Abs(float64(out[i])-w) > 1e-5*(1+math.Abs(w)) {
								t.Fatalf("%s: out[%d] = %v, want %v", name, i, out[i], w)
							}
						}
						for i, w := range wantLSE {
							if !withLSE {
								break
							}
							if math.IsInf(w, -1) != math.IsInf(float64(lse[i]), -1) || !math.IsInf(w, -1) && math.Abs(float64(lse[i])-w) > 1e-5*(1+math.Abs(w)) {
								t.Fatalf("%s: lse[%d] = %v, want %v", name, i, lse[i], w)
							}
						}
					}
				}
			}
		}
	})
}

// TestExp2ShiftSum checks the softmax step at every instruction-set level against
// math.Exp2: relative error within 3e-7 down to 2^-126, the sum, the lengths around the
// register widths, and NaN kept.
func TestExp2ShiftSum(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 512} {
			const m = 3.5
			x := make([]float32, n)
			for i := range x {
				switch i % 5 {
				case 0:
					x[i] = m - 200*r.Float32() // underflows below 2^-126
				case 1:
					x[i] = m
				default:
					x[i] = m - 30*r.Float32()
				}
			}
			want := make([]float64, n)
			var wantSum float64
			for i, v := range x {
				want[i] = math.Exp2(float64(v) - m)
				wantSum += want[i]
			}
			sum := exp2ShiftSum(x, m)
			for i, w := range want {
				if w < 0x1p-126 {
					if x[i] > 0x1p-126 {
						t.Fatalf("n=%d: 2^%v = %v, want at most 2^-126", n, float64(x[i])-m, x[i])
					}
					continue
				}
				if math.Abs(float64(x[i])-w) > 3e-7*w {
					t.Fatalf("n=%d: x[%d] = %v, want %v", n, i, x[i], w)
				}
			}
			if math.Abs(float64(sum)-wantSum) > 1e-6*(wantSum+1) {
				t.Fatalf("n=%d: sum %v, want %v", n, sum, wantSum)
			}
		}
		x := []float32{0, float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		exp2ShiftSum(x, 0)
		if !math.IsNaN(float64(x[1])) || x[0] != 1 {
			t.Fatalf("NaN input: got %v", x[:2])
		}
	})
}

// TestRowMax checks the row maximum at every instruction-set level against a plain loop,
// for lengths around the register widths and the maximum at every position.
func TestRowMax(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, n := range []int{1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 130} {
			for at := range n {
				x := make([]float32, n)
				for i := range x {
					x[i] = -100 * r.Float32()
				}
				x[at] = 5
				if got := rowMax(x); got != 5 {
					t.Fatalf("n=%d, max at %d: got %v", n, at, got)
				}
			}
		}
	})
}
