package kvquant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
	"squeeze/runtime/sparse"
)

// TestGroupRows: DotsN (with and without prepared queries) and AccumulateN of several
// vectors equal the reference decoding's products for every case of TestDotsAccumulate
// and for the row lengths the multi-row kernels take (multiples of 16, of 8 only, and
// others), and each vector's results are bitwise those of a call for it alone.
func TestGroupRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	types := testTypes(t)
	cases := rowsCases()
	for _, dim := range []int{16, 24, 64, 12} {
		cases = append(cases,
			rowsCase{typ: "nf3", axis: PerChannel, rows: 400, dim: dim, frac: 0.02, rope: true},
			rowsCase{typ: "int2", axis: PerChannel, rows: 150, dim: dim, frac: 0.01, rope: true},
			rowsCase{typ: "nf4", axis: PerToken, rows: 300, dim: dim, frac: 0.02},
			rowsCase{typ: "nf3", axis: PerToken, rows: 200, dim: dim, frac: 0.01},
		)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%dx%d/%v", c.typ, c.rows, c.dim, c.axis), func(t *testing.T) {
			_, r := quantizeCase(t, rng, types, c)
			d := c.dim
			ref := make([]float32, c.rows*d)
			r.dequantizeRef(ref, 0, c.rows)
			for _, nq := range []int{1, 3, 6} {
				lo := rng.IntN(c.rows)
				hi := lo + 1 + rng.IntN(c.rows-lo)
				q := randVec(rng, nq*d)
				var prep []float32
				if n := r.QueriesLen(nq); n > 0 {
					prep = make([]float32, n)
					r.PrepareQueries(prep, q, nq)
				}
				for _, pp := range [][]float32{prep, nil} {
					stride := hi - lo + 3
					got := make([]float32, nq*stride)
					r.DotsN(got, stride, q, pp, nq, lo, hi)
					for v := range nq {
						qv := q[v*d : (v+1)*d]
						for i := range hi - lo {
							row := ref[(lo+i)*d : (lo+i+1)*d]
							want := dot64(qv, row)
							if g := got[v*stride+i]; math.Abs(float64(g)-want) > 1e-4*(1+math.Abs(want))+1e-5*norm(qv)*norm(row) {
								t.Fatalf("DotsN (prepared %v) of %d vectors, rows %d..%d: vector %d row %d: %v, want %v", pp != nil, nq, lo, hi, v, lo+i, g, want)
							}
						}
					}
					last := q[(nq-1)*d:]
					var lp []float32
					if pp != nil {
						lp = make([]float32, r.QueriesLen(1))
						r.PrepareQueries(lp, last, 1)
					}
					one := make([]float32, hi-lo)
					r.DotsN(one, hi-lo, last, lp, 1, lo, hi)
					for i, g := range one {
						if g != got[(nq-1)*stride+i] {
							t.Fatalf("DotsN: vector %d scores row %d %v alone, %v among %d", nq-1, lo+i, g, got[(nq-1)*stride+i], nq)
						}
					}
				}
				w := randVec(rng, nq*(hi-lo))
				out := randVec(rng, nq*d)
				alone := append([]float32(nil), out[(nq-1)*d:]...)
				want := make([]float64, len(out))
				for v := range nq {
					for j := range d {
						want[v*d+j] = float64(out[v*d+j])
						for i := range hi - lo {
							want[v*d+j] += float64(w[v*(hi-lo)+i]) * float64(ref[(lo+i)*d+j])
						}
					}
				}
				r.AccumulateN(out, d, w, hi-lo, nq, lo, hi)
				for i, g := range out {
					if math.Abs(float64(g)-want[i]) > 1e-4*(1+math.Abs(want[i]))*float64(1+hi-lo) {
						t.Fatalf("AccumulateN of %d vectors, rows %d..%d: value %d: %v, want %v", nq, lo, hi, i, g, want[i])
					}
				}
				r.AccumulateN(alone, d, w[(nq-1)*(hi-lo):], hi-lo, 1, lo, hi)
				for j, g := range alone {
					if g != out[(nq-1)*d+j] {
						t.Fatalf("AccumulateN: vector %d value %d is %v alone, %v among %d", nq-1, j, g, out[(nq-1)*d+j], nq)
					}
				}
			}
		})
	}
}

// TestJoinedGroup: Joined rows (f16, then quantized) score and add several vectors part
// by part as their rows decoded would, prepared queries split among the parts.
func TestJoinedGroup(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	types := testTypes(t)
	const d, nq = 64, 3
	_, k := quantizeCase(t, rng, types, rowsCase{typ: "nf3", axis: PerChannel, rows: 90, dim: d, frac: 0.02, rope: true})
	_, v := quantizeCase(t, rng, types, rowsCase{typ: "nf3", axis: PerToken, rows: 90, dim: d, frac: 0.02})
	f := sparse.NewF16Rows(d, randRows(rng, 5, d))
	for _, rows := range []struct {
		name string
		r    *Rows
	}{{"keys", k}, {"values", v}} {
		j, err := Join(f, rows.r)
		if err != nil {
			t.Fatal(err)
		}
		n := j.Len()
		ref := dequantized(f, d)
		ref = append(ref, dequantized(rows.r, d)...)
		q := randVec(rng, nq*d)
		var prep []float32
		if m := j.QueriesLen(nq); m > 0 {
			prep = make([]float32, m)
			j.PrepareQueries(prep, q, nq)
		}
		got := make([]float32, nq*n)
		j.DotsN(got, n, q, prep, nq, 2, n)
		for vi := range nq {
			for i := 2; i < n; i++ {
				want := dot64(q[vi*d:(vi+1)*d], ref[i*d:(i+1)*d])
				if g := got[vi*n+i-2]; math.Abs(float64(g)-want) > 1e-3*(1+math.Abs(want)) {
					t.Fatalf("%s: DotsN vector %d row %d: %v, want %v", rows.name, vi, i, g, want)
				}
			}
		}
		w := randVec(rng, nq*n)
		out := make([]float32, nq*d)
		j.AccumulateN(out, d, w, n, nq, 2, n)
		for vi := range nq {
			for c := range d {
				var want float64
				for i := 2; i < n; i++ {
					want += float64(w[vi*n+i-2]) * float64(ref[i*d+c])
				}
				if g := out[vi*d+c]; math.Abs(float64(g)-want) > 1e-3*(1+math.Abs(want)) {
					t.Fatalf("%s: AccumulateN vector %d value %d: %v, want %v", rows.name, vi, c, g, want)
				}
			}
		}
	}
}

// TestQueriesForm: rows report one form of prepared queries exactly where they prepare
// alike (keys of one length rotated by one RoPE table, alone or joined after f16 rows),
// and their prepared forms are then the same; values, keys of another table, and rows
// joining two quantized parts report none or another.
func TestQueriesForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	types := testTypes(t)
	const d, n, nq = 64, 50, 3
	rope := testRoPE(t, d, 2*n, false)
	keys := func(r *RoPE) *Rows {
		k, err := Quantize(randRows(rng, n, d), d, Params{Type: types["nf3"], Axis: PerChannel, Outliers: 0.02, Pos: shuffledPositions(rng, n), RoPE: r})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b, other := keys(rope), keys(rope), keys(testRoPE(t, d, 2*n, false))
	_, v := quantizeCase(t, rng, types, rowsCase{typ: "nf3", axis: PerToken, rows: n, dim: d, frac: 0.02})
	join := func(parts ...sparse.Rows) *Joined {
		j, err := Join(parts...)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	f := sparse.NewF16Rows(d, randRows(rng, 4, d))
	joined, twice := join(f, b), join(a, b)
	if a.QueriesForm() == nil || a.QueriesForm() != b.QueriesForm() || a.QueriesForm() != joined.QueriesForm() {
		t.Fatalf("keys of one table: forms %v, %v, joined %v", a.QueriesForm(), b.QueriesForm(), joined.QueriesForm())
	}
	for _, c := range []struct {
		name string
		form any
	}{{"values", v.QueriesForm()}, {"two quantized parts", twice.QueriesForm()}, {"f16 only", join(f).QueriesForm()}} {
		if c.form != nil {
			t.Errorf("%s: form %v, want none", c.name, c.form)
		}
	}
	if other.QueriesForm() == a.QueriesForm() {
		t.Error("keys of another RoPE table report the same form")
	}
	q := randVec(rng, nq*d)
	pa, pj := make([]float32, a.QueriesLen(nq)), make([]float32, joined.QueriesLen(nq))
	a.PrepareQueries(pa, q, nq)
	joined.PrepareQueries(pj, q, nq)
	if len(pa) == 0 || len(pa) != len(pj) {
		t.Fatalf("prepared lengths %d and %d", len(pa), len(pj))
	}
	for i := range pa {
		if pa[i] != pj[i] {
			t.Fatalf("prepared value %d: %v alone, %v joined", i, pa[i], pj[i])
		}
	}
}

// TestSessionExactQuantized: over quantized rows, AttendExact gives a batch of tokens
// bitwise the attention of one-token Attend calls, dense and squeezed.
func TestSessionExactQuantized(t *testing.T) {
	m, err := model.Load(modeltest.Open(t, modeltest.Spec{Layers: 2, Dim: 192, Heads: 6, KVHeads: 2, Vocab: 300, Context: 1024}))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(23, 24))
	nf3, _ := NormalFloat(3)
	qc, _, _ := quantizedContext(t, rng, m, 600, 2, 30, 13, nf3, nf3)
	pool := kernels.NewPool(2)
	defer pool.Close()
	cfg := &m.Config
	qd, heads := cfg.Heads*cfg.HeadDim, cfg.Heads
	const n = 4
	for _, budget := range []float64{1, 0.5} {
		s, err := sparse.NewSession(qc, m, pool, budget)
		if err != nil {
			t.Fatal(err)
		}
		q := randVec(rng, n*qd)
		kernels.Scale(q, 0.05)
		out, lse := make([]float32, n*qd), make([]float32, n*heads)
		s.AttendExact(1, q, n, out, lse)
		for i := range n {
			o, l := make([]float32, qd), make([]float32, heads)
			s.Attend(1, q[i*qd:(i+1)*qd], 1, o, l)
			for j := range o {
				if o[j] != out[i*qd+j] {
					t.Fatalf("budget %v: token %d output %d: %v one at a time, %v in the batch", budget, i, j, o[j], out[i*qd+j])
				}
			}
			for j := range l {
				if l[j] != lse[i*heads+j] {
					t.Fatalf("budget %v: token %d lse %d: %v one at a time, %v in the batch", budget, i, j, l[j], lse[i*heads+j])
				}
			}
		}
	}
}

// TestPrefetch: Prefetch takes any range, inside the rows or not, and leaves what the
// rows read unchanged.
func TestPrefetch(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	types := testTypes(t)
	const d = 64
	_, k := quantizeCase(t, rng, types, rowsCase{typ: "nf3", axis: PerChannel, rows: 40, dim: d, frac: 0.02, rope: true})
	_, v := quantizeCase(t, rng, types, rowsCase{typ: "nf3", axis: PerToken, rows: 40, dim: d, frac: 0.02})
	j, err := Join(sparse.NewF16Rows(d, randRows(rng, 5, d)), k)
	if err != nil {
		t.Fatal(err)
	}
	q := randVec(rng, d)
	for _, c := range []struct {
		name string
		rows interface {
			sparse.Rows
			sparse.Prefetcher
		}
	}{{"keys", k}, {"values", v}, {"joined", j}, {"f16", sparse.NewF16Rows(d, randRows(rng, 7, d))}} {
		n := c.rows.Len()
		before := make([]float32, n)
		c.rows.Dots(before, q, 0, n)
		for _, r := range [][2]int{{0, n}, {0, 0}, {n - 1, n}, {3, 4}, {-1, 3}, {3, n + 5}, {5, 2}, {n, n + 1}} {
			c.rows.Prefetch(r[0], r[1])
		}
		after := make([]float32, n)
		c.rows.Dots(after, q, 0, n)
		for i := range after {
			if after[i] != before[i] {
				t.Fatalf("%s: row %d scores %v after Prefetch, %v before", c.name, i, after[i], before[i])
			}
		}
	}
}
