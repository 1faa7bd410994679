package kvquant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// anisotropicQueries returns n queries of dim values that mostly lie along three fixed
// directions, as a head's queries do.
func anisotropicQueries(rng *rand.Rand, n, dim int) []float32 {
	dirs := [3][]float32{randVec(rng, dim), randVec(rng, dim), randVec(rng, dim)}
	q := make([]float32, n*dim)
	for i := range n {
		a := [3]float64{4 * rng.NormFloat64(), 2 * rng.NormFloat64(), rng.NormFloat64()}
		for j := range dim {
			v := 0.1 * rng.NormFloat64()
			for k, d := range dirs {
				v += a[k] * float64(d[j])
			}
			q[i*dim+j] = float32(v)
		}
	}
	return q
}

// quadratic returns eᵀ M e.
func (m *Moment) quadratic(e []float64) float64 {
	var s float64
	for i, a := range e {
		for j, b := range e {
			s += a * m.M[i*m.Dim+j] * b
		}
	}
	return s
}

// TestMomentRounding: with a moment, Quantize's codes give every row a score error eᵀMe
// (after rotation to the row's position) no larger than nearest rounding's, much smaller
// in total for queries along a few directions, and smaller dot-product errors for new
// queries from the same distribution; every dense value keeps one of the two signposts
// around it, and outliers stay exact.
func TestMomentRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	types := testTypes(t)
	type tc struct {
		typ  string
		axis Axis
		rope string // "", "adjacent" or "neox"
		dim  int
	}
	var cases []tc
	for _, typ := range []string{"int2", "nf3", "nf4", "nf2-qnorm"} {
		cases = append(cases, tc{typ, PerChannel, "neox", 64}, tc{typ, PerChannel, "adjacent", 64}, tc{typ, PerToken, "", 64})
	}
	cases = append(cases, tc{"nf3", PerChannel, "", 48}, tc{"nf3", PerChannel, "neox", 128})
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%v/%s/%d", c.typ, c.axis, c.rope, c.dim), func(t *testing.T) {
			const rows, frac = 400, 0.01
			d := c.dim
			x := randRows(rng, rows, d)
			queries := anisotropicQueries(rng, 600, d)
			m, err := NewMoment(queries[:300*d], d, 0.05)
			if err != nil {
				t.Fatal(err)
			}
			p := Params{Type: types[c.typ], Axis: c.axis, Outliers: frac}
			if c.rope != "" {
				p.Pos = shuffledPositions(rng, rows)
				p.RoPE = testRoPE(t, d, 2*rows, c.rope == "neox")
			}
			nearest, err := Quantize(x, d, p)
			if err != nil {
				t.Fatal(err)
			}
			p.Moment = m
			aware, err := Quantize(x, d, p)
			if err != nil {
				t.Fatal(err)
			}
			ranges, out, err := Ranges(x, d, c.axis, frac)
			if err != nil {
				t.Fatal(err)
			}
			typ := types[c.typ]
			var gap float32 // the widest signpost gap plus Q-Norm's largest level shift
			for i := 1; i < len(typ.Signposts); i++ {
				gap = max(gap, typ.Signposts[i]-typ.Signposts[i-1])
			}
			gap += typ.Bound() - (func() float32 { t := typ; t.Levels = t.Signposts; return t.Bound() })()

			stored := make([]float32, len(x))
			aware.Unrotated().dequantizeRef(stored, 0, rows)
			for i, v := range x {
				if out[i] {
					if stored[i] != f16Round(v) {
						t.Fatalf("outlier %d: %v, want %v exactly", i, stored[i], f16Round(v))
					}
					continue
				}
				rg := c.axis.Of(ranges, d, i)
				if e := math.Abs(float64(stored[i] - v)); e > float64(gap*rg.Half)*(1+1e-5)+1e-6 {
					t.Fatalf("value %d: %v for %v, error %v beyond a signpost gap %v·%v", i, stored[i], v, e, gap, rg.Half)
				}
			}

			// Errors after rotation, by the reference decoding.
			rotated := func(r *Rows) [][]float64 {
				dec := make([]float32, len(x))
				r.dequantizeRef(dec, 0, rows)
				errs := make([][]float64, rows)
				for i := range rows {
					want := append([]float32(nil), x[i*d:(i+1)*d]...)
					if p.RoPE != nil {
						p.RoPE.Rotate(want, int(p.Pos[i]))
					}
					errs[i] = make([]float64, d)
					for j := range d {
						errs[i][j] = float64(dec[i*d+j]) - float64(want[j])
					}
				}
				return errs
			}
			en, ea := rotated(nearest), rotated(aware)
			var jn, ja float64
			for i := range rows {
				qn, qa := m.quadratic(en[i]), m.quadratic(ea[i])
				if qa > qn*(1+1e-4)+1e-9 {
					t.Fatalf("row %d: eᵀMe %v with the moment, %v rounding to nearest", i, qa, qn)
				}
				jn += qn
				ja += qa
			}
			t.Logf("eᵀMe %.4g with the moment, %.4g to nearest", ja, jn)
			if ja > 0.8*jn {
				t.Errorf("total eᵀMe %v with the moment against %v to nearest: less than 20%% lower", ja, jn)
			}
			// Queries the moment did not see.
			var sn, sa float64
			for k := 300; k < 600; k++ {
				q := queries[k*d : (k+1)*d]
				for i := range rows {
					var a, b float64
					for j, v := range q {
						a += float64(v) * en[i][j]
						b += float64(v) * ea[i][j]
					}
					sn += a * a
					sa += b * b
				}
			}
			if sa > 0.85*sn {
				t.Errorf("squared score error on new queries %v with the moment against %v to nearest", sa, sn)
			}
		})
	}
}

func TestNewMomentInvalid(t *testing.T) {
	for _, c := range []struct {
		name  string
		vecs  []float32
		dim   int
		ridge float64
	}{
		{"empty", nil, 4, 0},
		{"ragged", make([]float32, 7), 4, 0},
		{"zero dim", make([]float32, 4), 0, 0},
		{"negative ridge", make([]float32, 4), 4, -1},
		{"NaN ridge", make([]float32, 4), 4, math.NaN()},
		{"infinite value", []float32{1, float32(math.Inf(1)), 0, 0}, 4, 0},
	} {
		if _, err := NewMoment(c.vecs, c.dim, c.ridge); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	m, err := NewMoment([]float32{1, 2, 0, 3}, 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	// Σ q qᵀ = [[1, 2], [2, 13]], trace 14: the ridge adds 0.5·7 to the diagonal.
	want := []float64{4.5, 2, 2, 16.5}
	for i, v := range want {
		if m.M[i] != v {
			t.Fatalf("moment %v, want %v", m.M, want)
		}
	}
	if _, err := Quantize(make([]float32, 8), 4, Params{Type: testTypes(t)["nf3"], Moment: m}); err == nil {
		t.Error("a moment of 2 for rows of 4: no error")
	}
}
