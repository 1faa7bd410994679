package kvquant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPerTokenKeys: keys quantized per token (the ablation of per-channel keys), before
// RoPE or after it, round-trip within the datatype's bound of their row's range, keep
// their outliers exactly, decode rotated to their positions, and attention over them
// (DotsN, Dots, then the values' AccumulateN) equals attention over the dequantized rows.
func TestPerTokenKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	types := testTypes(t)
	type tc struct {
		typ       string
		rows, dim int
		frac      float64
		rope      bool
	}
	var cases []tc
	for _, typ := range []string{"int2", "nf3", "nf4", "nf2-qnorm"} {
		for _, frac := range []float64{0, 0.01, 0.1} {
			cases = append(cases, tc{typ, 300, 64, frac, true}, tc{typ, 200, 128, frac, true})
		}
	}
	cases = append(cases, tc{"nf3", 150, 64, 0.01, false}, tc{"int4", 90, 12, 0.05, true}, tc{"nf3", 1, 16, 0.01, true})
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%dx%d/%g/rope=%v", c.typ, c.rows, c.dim, c.frac, c.rope), func(t *testing.T) {
			d := c.dim
			x := randRows(rng, c.rows, d)
			p := Params{Type: types[c.typ], Axis: PerToken, Outliers: c.frac}
			if c.rope {
				p.Pos = shuffledPositions(rng, c.rows)
				p.RoPE = testRoPE(t, d, 2*c.rows, d >= 128)
			}
			keys, err := Quantize(x, d, p)
			if err != nil {
				t.Fatal(err)
			}
			if keys.Axis != PerToken || keys.Len() != c.rows || keys.QueriesLen(3) != 0 {
				t.Fatalf("axis %v, %d rows, prepared queries of %d", keys.Axis, keys.Len(), keys.QueriesLen(3))
			}
			ranges, out, err := Ranges(x, d, PerToken, c.frac)
			if err != nil {
				t.Fatal(err)
			}
			// As stored (before RoPE): each dense value within the bound of its row's range,
			// each outlier exact.
			stored := make([]float32, len(x))
			keys.Unrotated().dequantizeRef(stored, 0, c.rows)
			bound := types[c.typ].Bound()
			outliers := 0
			for i, v := range x {
				if out[i] {
					outliers++
					if want := f16Round(v); stored[i] != want {
						t.Fatalf("outlier %d: %v, want %v exactly", i, stored[i], want)
					}
					continue
				}
				rg := ranges[i/d]
				if e := math.Abs(float64(stored[i] - v)); e > float64(bound*rg.Half)*(1+1e-5)+1e-6 {
					t.Fatalf("value %d: %v for %v, error %v above the bound %v·%v", i, stored[i], v, e, bound, rg.Half)
				}
			}
			if outliers != keys.Outliers() || (c.frac > 0 && c.rows*d >= 200 && outliers == 0) {
				t.Fatalf("%d outliers stored, %d flagged", keys.Outliers(), outliers)
			}
			// Read: rotated to their positions, the fast decoding as the reference.
			ref := make([]float32, len(x))
			keys.dequantizeRef(ref, 0, c.rows)
			fast := make([]float32, len(x))
			keys.Dequantize(fast, 0, c.rows)
			for i := range c.rows {
				want := slices.Clone(stored[i*d : (i+1)*d])
				if c.rope {
					keys.RoPE.Rotate(want, int(keys.Pos[i]))
				}
				got, gf := ref[i*d:(i+1)*d], fast[i*d:(i+1)*d]
				for j := range want {
					if got[j] != want[j] || math.Abs(float64(gf[j]-want[j])) > 1e-5*(1+norm(want)) {
						t.Fatalf("row %d value %d: reference %v, fast %v, want %v", i, j, got[j], gf[j], want[j])
					}
				}
			}
			// Attention of a group of query vectors, from the rows against the dequantized rows.
			vals, err := Quantize(randRows(rng, c.rows, d), d, Params{Type: types[c.typ], Axis: PerToken, Outliers: c.frac})
			if err != nil {
				t.Fatal(err)
			}
			vref := make([]float32, c.rows*d)
			vals.Dequantize(vref, 0, c.rows)
			const nq = 3
			q := randVec(rng, nq*d)
			scale := float32(1 / math.Sqrt(float64(d)))
			for i := range q {
				q[i] *= scale
			}
			scores := make([]float32, nq*c.rows)
			keys.DotsN(scores, c.rows, q, nil, nq, 0, c.rows)
			w := make([]float32, len(scores))
			wantOut := make([]float64, nq*d)
			for v := range nq {
				qv := q[v*d : (v+1)*d]
				one := make([]float32, c.rows)
				keys.Dots(one, qv, 0, c.rows)
				if !slices.Equal(one, scores[v*c.rows:(v+1)*c.rows]) {
					t.Fatalf("vector %d: DotsN scores differ from Dots", v)
				}
				exact := make([]float64, c.rows)
				for i := range c.rows {
					exact[i] = dot64(qv, fast[i*d:(i+1)*d])
				}
				sv := softmax64(exact)
				got := make([]float64, c.rows)
				for i, s := range scores[v*c.rows : (v+1)*c.rows] {
					got[i] = float64(s)
				}
				gv := softmax64(got)
				for i := range c.rows {
					if math.Abs(gv[i]-sv[i]) > 1e-5 {
						t.Fatalf("vector %d: weight of row %d %v, over the dequantized keys %v", v, i, gv[i], sv[i])
					}
					w[v*c.rows+i] = float32(gv[i])
					for j := range d {
						wantOut[v*d+j] += sv[i] * float64(vref[i*d+j])
					}
				}
			}
			gotOut := make([]float32, nq*d)
			vals.AccumulateN(gotOut, d, w, c.rows, nq, 0, c.rows)
			for i, g := range gotOut {
				if math.Abs(float64(g)-wantOut[i]) > 1e-4*(1+math.Abs(wantOut[i])) {
					t.Fatalf("output %d: %v, attention over the dequantized rows %v", i, g, wantOut[i])
				}
			}
		})
	}
}

// softmax64 returns the softmax of x in float64.
func softmax64(x []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	out := make([]float64, len(x))
	var s float64
	for i, v := range x {
		out[i] = math.Exp(v - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}
