package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestKVQRows compares the multi-row kernels at every instruction-set level with
// references written from their definitions (key decoded, rotated by composed angles,
// dotted; values weighted level by level), for every code width, 1 to 4 vectors, and
// codes that end exactly at the last row (the padded copy) or run on; results for one
// vector must not depend on the others.
func TestKVQRows(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 8))
		for _, bits := range []int{2, 3, 4} {
			for _, dim := range []int{8, 32, 64, 80, 128} {
				for _, n := range []int{1, 5, 50, 130} {
					for _, extra := range []int{0, 5, 200} {
						kvqRowsCase(t, rng, bits, dim, n, extra)
					}
				}
			}
		}
	})
}

// randomKVQRows returns n random rows of dim bits-bit codes (and extra bytes past
// them), random levels (2^bits of them) and random channel ranges (Half, Mid).
func randomKVQRows(rng *rand.Rand, bits, dim, n, extra int) (src []byte, base, half, mid []float32) {
	src = make([]byte, n*dim*bits/8+extra)
	for i := range src {
		src[i] = byte(rng.UintN(256))
	}
	base = make([]float32, 1<<bits)
	for i := range base {
		base[i] = float32(rng.NormFloat64())
	}
	half, mid = make([]float32, dim), make([]float32, dim)
	for j := range half {
		half[j], mid[j] = float32(rng.Float64()), float32(rng.NormFloat64())
	}
	return src, base, half, mid
}

func kvqRowsCase(t *testing.T, rng *rand.Rand, bits, dim, n, extra int) {
	rb := dim * bits / 8
	src, base, half, mid := randomKVQRows(rng, bits, dim, n, extra)
	lv := KVQPeriodic(base)
	ranges := KVQChannelRanges(half, mid)
	const hiRows = 5
	p := dim / 2
	// RoPE-like angles: pair i turns by pos·freq[i]; row r of a table holds those of
	// position r·step.
	freq := make([]float64, p)
	for i := range freq {
		freq[i] = rng.Float64()
	}
	angles := func(rows, step int) ([]float32, [][2][]float32) {
		var tab []float32
		var parts [][2][]float32
		for r := range rows {
			c, s := make([]float32, p), make([]float32, p)
			for i, f := range freq {
				a := float64(r*step) * f
				c[i], s[i] = float32(math.Cos(a)), float32(math.Sin(a))
			}
			tab = append(tab, KVQPairAngles(c, s)...)
			parts = append(parts, [2][]float32{c, s})
		}
		return tab, parts
	}
	hi, hp := angles(hiRows, 64)
	lo, lp := angles(64, 1)
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(rng.IntN(64 * hiRows))
	}
	for nq := 1; nq <= KVQMaxVecs; nq++ {
		q := make([]float32, nq*dim)
		for i := range q {
			q[i] = float32(rng.NormFloat64())
		}
		// Keys: want from the definition, through KVQDecodeRotate's parts.
		const dstride = 140
		got := make([]float32, (nq-1)*dstride+n+1)
		got[len(got)-1] = 42
		KVQScoreKeys(got, dstride, q, nq, src, n, bits, &lv, ranges, pos, hi, lo)
		key := make([]float32, dim)
		for i := range n {
			h, l := hp[pos[i]>>6], lp[pos[i]&63]
			KVQDecodeRotate(key, src[i*rb:(i+1)*rb], bits, &lv, half, mid, h[0], h[1], l[0], l[1])
			for v := range nq {
				var want float64
				for j, k := range key {
					want += float64(q[v*dim+j]) * float64(k)
				}
				if g := got[v*dstride+i]; math.Abs(float64(g)-want) > 1e-4*(1+math.Abs(want)) {
					t.Fatalf("%d bits, dim %d, %d rows (+%d), %d vectors: score %d of row %d = %v, want %v", bits, dim, n, extra, nq, v, i, g, want)
				}
			}
		}
		if got[len(got)-1] != 42 {
			t.Fatalf("%d bits, dim %d: KVQScoreKeys wrote past its rows", bits, dim)
		}
		// One vector alone gets the bits it gets among others.
		one := make([]float32, n)
		KVQScoreKeys(one, n, q[(nq-1)*dim:], 1, src, n, bits, &lv, ranges, pos, hi, lo)
		for i := range n {
			if one[i] != got[(nq-1)*dstride+i] {
				t.Fatalf("%d bits, dim %d: vector %d scores row %d %v alone, %v among %d", bits, dim, nq-1, i, one[i], got[(nq-1)*dstride+i], nq)
			}
		}

		// Keys with the low angles moved to the queries, where that kernel runs.
		if KVQQueriesLen(nq, dim) > 0 {
			// Rows of the high table: the angles of positions 32h; of the low one:
			// positions 0..31.
			var hi16, back []float32
			_, hp32 := angles(64*hiRows/KVQLowPositions, KVQLowPositions)
			for _, h := range hp32 {
				hi16 = append(hi16, KVQPairAngles16(h[0], h[1])...)
			}
			for _, l := range lp[:KVQLowPositions] {
				back = append(back, KVQTurnBack16(l[0], l[1])...)
			}
			prep := make([]float32, KVQQueriesLen(nq, dim))
			KVQRotateQueries(prep, q, nq, dim, back)
			lo16 := make([]float32, (nq-1)*dstride+n)
			r16 := KVQChannelRanges16(half, mid)
			KVQScoreKeysLo(lo16, dstride, prep, nq, src, n, bits, &lv, r16, pos, hi16)
			for v := range nq {
				for i := range n {
					g, w := lo16[v*dstride+i], got[v*dstride+i]
					if math.Abs(float64(g-w)) > 1e-4*(1+math.Abs(float64(w))) {
						t.Fatalf("%d bits, dim %d, %d rows (+%d), %d vectors: low-angle score %d of row %d = %v, want %v", bits, dim, n, extra, nq, v, i, g, w)
					}
				}
			}
			// The same with rows after the last one readable where src runs on (their
			// codes and positions there to read, their scores not to be written): gaps
			// between the vectors' rows keep their sentinels.
			{
				more := append(append([]int32(nil), pos...), pos[0], pos[0], pos[0])
				gaps := make([]float32, nq*dstride)
				for i := range gaps {
					gaps[i] = 42
				}
				KVQScoreKeysLo(gaps, dstride, prep, nq, src, n, bits, &lv, r16, more, hi16)
				for v := range nq {
					for i := range dstride {
						g := gaps[v*dstride+i]
						if i >= n && g != 42 {
							t.Fatalf("%d bits, dim %d, %d rows, %d vectors: wrote score %d of row %d past the rows", bits, dim, n, nq, v, i)
						}
						if i < n && g != lo16[v*dstride+i] {
							t.Fatalf("%d bits, dim %d, %d rows, %d vectors: score %d of row %d = %v with rows after it readable, %v without", bits, dim, n, nq, v, i, g, lo16[v*dstride+i])
						}
					}
				}
			}
			prep1 := make([]float32, KVQQueriesLen(1, dim))
			KVQRotateQueries(prep1, q[(nq-1)*dim:], 1, dim, back)
			KVQScoreKeysLo(one, n, prep1, 1, src, n, bits, &lv, r16, pos, hi16)
			for i := range n {
				if one[i] != lo16[(nq-1)*dstride+i] {
					t.Fatalf("%d bits, dim %d: vector %d low-angle scores row %d %v alone, %v among %d", bits, dim, nq-1, i, one[i], lo16[(nq-1)*dstride+i], nq)
				}
			}
		}

		// Values.
		const astride = 150
		ostride := max(90, dim+3)
		a := make([]float32, (nq-1)*astride+n)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		out := make([]float32, (nq-1)*ostride+dim)
		for i := range out {
			out[i] = float32(rng.NormFloat64())
		}
		half, mid := make([]float32, n), make([]float32, n)
		for i := range half {
			half[i], mid[i] = float32(rng.Float64()), float32(rng.NormFloat64())
		}
		want := make([]float64, len(out))
		for i, o := range out {
			want[i] = float64(o)
		}
		for v := range nq {
			for i := range n {
				for j := range dim {
					want[v*ostride+j] += float64(a[v*astride+i]) * (float64(half[i])*float64(base[kvqCode(src[i*rb:], bits, j)]) + float64(mid[i]))
				}
			}
		}
		alone := append([]float32(nil), out[(nq-1)*ostride:]...)
		KVQAccumulateTokens(out, ostride, a, astride, nq, half, mid, src, n, dim, bits, &lv)
		KVQAccumulateTokens(alone, ostride, a[(nq-1)*astride:], astride, 1, half, mid, src, n, dim, bits, &lv)
		for v := range nq {
			for j := range dim {
				g, w := out[v*ostride+j], want[v*ostride+j]
				if math.Abs(float64(g)-w) > 1e-4*(1+math.Abs(w)) {
					t.Fatalf("%d bits, dim %d, %d rows (+%d), %d vectors: value %d[%d] = %v, want %v", bits, dim, n, extra, nq, v, j, g, w)
				}
			}
		}
		for j := range dim {
			if alone[j] != out[(nq-1)*ostride+j] {
				t.Fatalf("%d bits, dim %d: vector %d value %d is %v alone, %v among %d", bits, dim, nq-1, j, alone[j], out[(nq-1)*ostride+j], nq)
			}
		}
	}
}

// BenchmarkKVQRows times the multi-row kernels on 4096 rows of 64 3-bit codes for 3
// vectors (a GQA group), in calls of 128 rows, and reports ns per row.
func BenchmarkKVQRows(b *testing.B) {
	const n, dim, bits, nq, call = 4096, 64, 3, 3, 128
	rng := rand.New(rand.NewPCG(3, 4))
	rb := dim * bits / 8
	src, base, half, mid := randomKVQRows(rng, bits, dim, n, 8)
	lv := KVQPeriodic(base)
	q := make([]float32, nq*dim)
	for i := range q {
		q[i] = float32(rng.NormFloat64())
	}
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(rng.IntN(n))
	}
	p := dim / 2
	cos, sin := make([]float32, p), make([]float32, p)
	var hi16, back []float32
	for r := range n / KVQLowPositions {
		for i := range p {
			a := float64(r*KVQLowPositions) / float64(i+1)
			cos[i], sin[i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		hi16 = append(hi16, KVQPairAngles16(cos, sin)...)
	}
	for l := range KVQLowPositions {
		for i := range p {
			a := float64(l) / float64(i+1)
			cos[i], sin[i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		back = append(back, KVQTurnBack16(cos, sin)...)
	}
	dst := make([]float32, nq*call)
	perRow := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
	}
	if KVQQueriesLen(nq, dim) > 0 {
		prep := make([]float32, KVQQueriesLen(nq, dim))
		KVQRotateQueries(prep, q, nq, dim, back)
		r16 := KVQChannelRanges16(half, mid)
		b.Run("keys", func(b *testing.B) {
			for b.Loop() {
				for lo := 0; lo < n; lo += call {
					KVQScoreKeysLo(dst, call, prep, nq, src[lo*rb:], call, bits, &lv, r16, pos[lo:lo+call], hi16)
				}
			}
			perRow(b)
		})
	}
	w := make([]float32, nq*call)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	rh, rm := make([]float32, n), make([]float32, n)
	for i := range rh {
		rh[i], rm[i] = float32(rng.Float64()), float32(rng.NormFloat64())
	}
	out := make([]float32, nq*dim)
	b.Run("values", func(b *testing.B) {
		for b.Loop() {
			for lo := 0; lo < n; lo += call {
				KVQAccumulateTokens(out, dim, w, call, nq, rh[lo:lo+call], rm[lo:lo+call], src[lo*rb:], call, dim, bits, &lv)
			}
		}
		perRow(b)
	})
}

// TestKVQScoreKeysLoPositions checks that a position past the angle table, or negative,
// panics wherever it falls: in a whole block of 4 rows, in the padded last block, in a
// row after the last that the kernel reads, or in rows of another length.
func TestKVQScoreKeysLoPositions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dim, n int
		at     int
		p      int32
		more   int // positions (and rows of codes) after the n rows
	}{
		{"block, past", 64, 9, 2, 64, 0},
		{"block, negative", 64, 9, 5, -1, 0},
		{"padded, past", 64, 9, 8, 1000, 0},
		{"padded, negative", 64, 6, 4, -40, 0},
		{"read after the rows, past", 64, 9, 10, 64, 3},
		{"dim 32, past", 32, 9, 3, 64, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if KVQQueriesLen(1, tc.dim) == 0 {
				t.Skip("KVQScoreKeysLo does not run on this machine")
			}
			rng := rand.New(rand.NewPCG(9, 9))
			src, base, half, mid := randomKVQRows(rng, 3, tc.dim, tc.n+tc.more, 8)
			lv := KVQPeriodic(base)
			// Two rows of angles: positions 0..63.
			hi := make([]float32, 2*2*tc.dim)
			q := make([]float32, tc.dim)
			cos, sin := make([]float32, tc.dim/2), make([]float32, tc.dim/2)
			for i := range cos {
				cos[i] = 1
			}
			var back []float32
			for range KVQLowPositions {
				back = append(back, KVQTurnBack16(cos, sin)...)
			}
			prep := make([]float32, KVQQueriesLen(1, tc.dim))
			KVQRotateQueries(prep, q, 1, tc.dim, back)
			pos := make([]int32, tc.n+tc.more)
			for i := range pos {
				pos[i] = int32(i)
			}
			dst := make([]float32, tc.n)
			r16 := KVQChannelRanges16(half, mid)
			KVQScoreKeysLo(dst, tc.n, prep, 1, src, tc.n, 3, &lv, r16, pos, hi) // in range: no panic
			pos[tc.at] = tc.p
			defer func() {
				if recover() == nil {
					t.Errorf("position %d of row %d: no panic", tc.p, tc.at)
				}
			}()
			KVQScoreKeysLo(dst, tc.n, prep, 1, src, tc.n, 3, &lv, r16, pos, hi)
		})
	}
}

// TestKVQRotateQueries compares the queries' prepared form with each pair turned back by
// its angle in float64, for 1 to 4 vectors and rows of 16 to 256 values, at every
// instruction-set level.
func TestKVQRotateQueries(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 12))
		for _, dim := range []int{16, 64, 80, 256} {
			p := dim / 2
			var back []float32
			var ang [][2][]float64
			for range KVQLowPositions {
				c, s := make([]float32, p), make([]float32, p)
				a := [2][]float64{make([]float64, p), make([]float64, p)}
				for i := range p {
					th := rng.Float64() * 2 * math.Pi
					c[i], s[i] = float32(math.Cos(th)), float32(math.Sin(th))
					a[0][i], a[1][i] = float64(c[i]), float64(s[i])
				}
				back = append(back, KVQTurnBack16(c, s)...)
				ang = append(ang, a)
			}
			for nq := 1; nq <= KVQMaxVecs; nq++ {
				q := make([]float32, nq*dim)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				dst := make([]float32, KVQLowPositions*nq*dim+1)
				dst[len(dst)-1] = 42
				KVQRotateQueries(dst, q, nq, dim, back)
				if dst[len(dst)-1] != 42 {
					t.Fatalf("dim %d, %d vectors: wrote past the form", dim, nq)
				}
				groups := dim / 16
				for l := range KVQLowPositions {
					for v := range nq {
						for j := 0; j < dim; j += 2 {
							c, s := ang[l][0][j/2], ang[l][1][j/2]
							x, y := float64(q[v*dim+j]), float64(q[v*dim+j+1])
							want := [2]float64{x*c + y*s, y*c - x*s}
							for k, w := range want {
								at := ((l*groups+(j+k)/16)*nq+v)*16 + (j+k)%16
								if g := float64(dst[at]); math.Abs(g-w) > 1e-6*(1+math.Abs(x)+math.Abs(y)) {
									t.Fatalf("dim %d, %d vectors: position %d, vector %d, value %d = %v, want %v", dim, nq, l, v, j+k, g, w)
								}
							}
						}
					}
				}
			}
		}
	})
}
