package kernels

import (
	"math/rand/v2"
	"testing"
)

// TestKVQFixes compares the key and value correction loops at every instruction-set
// level with the reference loops on random fixes (several on one row and one pair or
// value among them), for 1 to 4 vectors, and checks that fixes outside the rows or
// vectors panic.
func TestKVQFixes(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(9, 10))
		for _, c := range []struct{ n, dim, fixes int }{{1, 8, 1}, {5, 64, 7}, {130, 64, 90}, {40, 80, 0}} {
			for nq := 1; nq <= KVQMaxVecs; nq++ {
				const lo = 17
				stride := c.n + 3
				q := randF32(rng, nq*c.dim)
				kf := make([]KVQKeyFix, c.fixes)
				for k := range kf {
					row := int32(lo + rng.IntN(c.n))
					kf[k] = KVQKeyFix{Row: row, Pair: uint16(rng.IntN(c.dim / 2)), A: float32(rng.NormFloat64()), B: float32(rng.NormFloat64())}
				}
				dst := randF32(rng, (nq-1)*stride+c.n+1)
				want := append([]float32(nil), dst...)
				KVQAddKeyFixes(dst, stride, c.n, q, nq, c.dim, kf, lo)
				kvqAddKeyFixesRef(want, stride, q, nq, c.dim, kf, lo)
				for i := range dst {
					if dst[i] != want[i] {
						t.Fatalf("%+v, %d vectors: key score %d = %v, want %v", c, nq, i, dst[i], want[i])
					}
				}
				// Values: the same rows, fixes of single values.
				vf := make([]KVQValueFix, c.fixes)
				for k := range vf {
					vf[k] = KVQValueFix{Row: int32(lo + rng.IntN(c.n)), At: uint16(rng.IntN(c.dim)), A: float32(rng.NormFloat64())}
				}
				w := randF32(rng, (nq-1)*stride+c.n)
				ostride := c.dim + 5
				out := randF32(rng, (nq-1)*ostride+c.dim+1)
				wantOut := append([]float32(nil), out...)
				KVQAddValueFixes(out, ostride, w, stride, c.n, nq, c.dim, vf, lo)
				kvqAddValueFixesRef(wantOut, ostride, w, stride, nq, vf, lo)
				for i := range out {
					if out[i] != wantOut[i] {
						t.Fatalf("%+v, %d vectors: value sum %d = %v, want %v", c, nq, i, out[i], wantOut[i])
					}
				}
			}
		}
		for _, c := range []struct {
			name string
			fn   func()
		}{
			{"key row below", func() {
				KVQAddKeyFixes(make([]float32, 8), 8, 8, make([]float32, 8), 1, 8, []KVQKeyFix{{Row: 1}}, 2)
			}},
			{"key row above", func() {
				KVQAddKeyFixes(make([]float32, 8), 8, 8, make([]float32, 8), 1, 8, []KVQKeyFix{{Row: 10}}, 2)
			}},
			{"key pair", func() {
				KVQAddKeyFixes(make([]float32, 8), 8, 8, make([]float32, 8), 1, 8, []KVQKeyFix{{Row: 2, Pair: 4}}, 2)
			}},
			{"value row below", func() {
				KVQAddValueFixes(make([]float32, 8), 8, make([]float32, 8), 8, 8, 1, 8, []KVQValueFix{{Row: 1}}, 2)
			}},
			{"value row above", func() {
				KVQAddValueFixes(make([]float32, 8), 8, make([]float32, 8), 8, 8, 1, 8, []KVQValueFix{{Row: 10}}, 2)
			}},
			{"key row above, after one inside", func() {
				KVQAddKeyFixes(make([]float32, 8), 8, 8, make([]float32, 8), 1, 8, []KVQKeyFix{{Row: 2}, {Row: 3}, {Row: 10}}, 2)
			}},
			{"value index, after one inside", func() {
				KVQAddValueFixes(make([]float32, 8), 8, make([]float32, 8), 8, 8, 1, 8, []KVQValueFix{{Row: 2}, {Row: 3, At: 9}}, 2)
			}},
			{"value index", func() {
				KVQAddValueFixes(make([]float32, 8), 8, make([]float32, 8), 8, 8, 1, 8, []KVQValueFix{{Row: 2, At: 8}}, 2)
			}},
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s: no panic", c.name)
					}
				}()
				c.fn()
			}()
		}
	})
}

// TestKVQAccumulateLongRows: rows longer than the kernels' padded copy of a last row
// (384 values of 3 bits) add what the reference adds, for codes that end exactly at the
// last row and blocks of rows that end with one row.
func TestKVQAccumulateLongRows(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 12))
		const dim, bits = 384, 3
		lv := KVQPeriodic([]float32{-1, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1})
		for _, n := range []int{1, 2, 129, 130} {
			for nq := 1; nq <= KVQMaxVecs; nq++ {
				src := make([]byte, n*dim*bits/8)
				for i := range src {
					src[i] = byte(rng.UintN(256))
				}
				w, half, mid := randF32(rng, nq*n), randF32(rng, n), randF32(rng, n)
				out := randF32(rng, nq*dim)
				want := append([]float32(nil), out...)
				KVQAccumulateTokens(out, dim, w, n, nq, half, mid, src, n, dim, bits, &lv)
				kvqAccumRef(want, dim, w, n, nq, half, mid, src, n, dim, bits, &lv)
				for i := range out {
					if d := float64(out[i] - want[i]); d > 1e-3 || d < -1e-3 {
						t.Fatalf("%d rows, %d vectors: value %d = %v, want %v", n, nq, i, out[i], want[i])
					}
				}
			}
		}
	})
}
