package sparse

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/kernels"
)

// TestTail: a session with rows after its context (AppendTail, in two blocks) attends to the context as
// without them and to every tail row: its output is the log-sum-exp merge of the
// context's attention and the float64 reference's over the tail, dense and sparse, for
// one token and a batch, with f16 and generic tail rows; Len grows by the tail and the
// statistics leave it out.
func TestTail(t *testing.T) {
	m := tinyModel(t)
	cfg := &m.Config
	hd := cfg.HeadDim
	const S, T = 301, 37
	f := newAttendFixture(t, m, S, 9)
	rng := rand.New(rand.NewPCG(5, 6))
	keys, values := make([][]Rows, cfg.Layers), make([][]Rows, cfg.Layers)
	refK, refV := make([][]float64, cfg.Layers*cfg.KVHeads), make([][]float64, cfg.Layers*cfg.KVHeads)
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			k, v := randVec(rng, T*hd, 1), randVec(rng, T*hd, 1)
			keys[l] = append(keys[l], NewF16Rows(hd, k))
			values[l] = append(values[l], NewF16Rows(hd, v))
			refK[l*cfg.KVHeads+h], refV[l*cfg.KVHeads+h] = roundF16(k), roundF16(v)
		}
	}
	generic := func(rs [][]Rows) [][]Rows {
		out := make([][]Rows, len(rs))
		for l := range rs {
			for _, r := range rs[l] {
				out[l] = append(out[l], genericRows{r.(*F16Rows)})
			}
		}
		return out
	}
	all := make([]int32, T)
	for i := range all {
		all[i] = int32(i)
	}
	pool := kernels.NewPool(3)
	defer pool.Close()
	for _, budget := range []float64{1, 0.5} {
		for _, n := range []int{1, 5} {
			for _, wrap := range []bool{false, true} {
				plain, err := NewSession(f.ctx, m, pool, budget)
				if err != nil {
					t.Fatal(err)
				}
				s, _ := NewSession(f.ctx, m, pool, budget)
				tk, tv := keys, values
				if wrap {
					tk, tv = generic(keys), generic(values)
				}
				// Two blocks: rows [0, 20) and [20, T).
				cut := func(rs [][]Rows, lo, hi int) [][]Rows {
					out := make([][]Rows, len(rs))
					for l := range rs {
						for _, r := range rs[l] {
							var f *F16Rows
							switch v := r.(type) {
							case *F16Rows:
								f = v
							case genericRows:
								f = v.r
							}
							part := &F16Rows{Dim: hd, Data: f.Data[lo*hd : hi*hd]}
							if _, ok := r.(genericRows); ok {
								out[l] = append(out[l], genericRows{part})
							} else {
								out[l] = append(out[l], part)
							}
						}
					}
					return out
				}
				for _, b := range [][2]int{{0, 20}, {20, T}} {
					if err := s.AppendTail(cut(tk, b[0], b[1]), cut(tv, b[0], b[1])); err != nil {
						t.Fatal(err)
					}
				}
				if s.Len() != S+T || s.Tail() != T {
					t.Fatalf("Len %d, Tail %d; want %d, %d", s.Len(), s.Tail(), S+T, T)
				}
				for layer := range cfg.Layers {
					q := randVec(rng, n*cfg.QDim(), 0.6)
					out, lse := make([]float32, n*cfg.QDim()), make([]float32, n*cfg.Heads)
					out0, lse0 := make([]float32, n*cfg.QDim()), make([]float32, n*cfg.Heads)
					s.Attend(layer, q, n, out, lse)
					plain.Attend(layer, q, n, out0, lse0)
					group := cfg.Heads / cfg.KVHeads
					for qi := range n * cfg.Heads {
						g := qi % cfg.Heads / group
						ref, refLSE := naiveAttend(q[qi*hd:(qi+1)*hd], refK[layer*cfg.KVHeads+g], refV[layer*cfg.KVHeads+g], hd, all)
						l0 := float64(lse0[qi])
						mx := max(l0, refLSE)
						w0, wt := math.Exp(l0-mx), math.Exp(refLSE-mx)
						wantLSE := mx + math.Log(w0+wt)
						if d := math.Abs(float64(lse[qi]) - wantLSE); d > 1e-4*max(1, math.Abs(wantLSE)) {
							t.Fatalf("budget %v n %d generic %v layer %d vector %d: lse %v, want %v", budget, n, wrap, layer, qi, lse[qi], wantLSE)
						}
						for d := range hd {
							want := (w0*float64(out0[qi*hd+d]) + wt*ref[d]) / (w0 + wt)
							if diff := math.Abs(float64(out[qi*hd+d]) - want); diff > 2e-5+1e-4*math.Abs(want) {
								t.Fatalf("budget %v n %d generic %v layer %d vector %d dim %d: %v, want %v", budget, n, wrap, layer, qi, d, out[qi*hd+d], want)
							}
						}
					}
				}
				if s.Stats() != plain.Stats() {
					t.Fatalf("stats with a tail %+v, without %+v", s.Stats(), plain.Stats())
				}
			}
		}
	}
}

// TestAppendTailErrors: a tail of the wrong shape is refused with ErrMismatch and leaves
// the session as it was; ClearTail clears the tail.
func TestAppendTailErrors(t *testing.T) {
	m := tinyModel(t)
	cfg := &m.Config
	hd := cfg.HeadDim
	f := newAttendFixture(t, m, 101, 3)
	pool := kernels.NewPool(1)
	defer pool.Close()
	s, err := NewSession(f.ctx, m, pool, 1)
	if err != nil {
		t.Fatal(err)
	}
	rows := func(n, dim int) [][]Rows {
		out := make([][]Rows, cfg.Layers)
		for l := range out {
			for range cfg.KVHeads {
				out[l] = append(out[l], NewF16Rows(dim, make([]float32, n*dim)))
			}
		}
		return out
	}
	if err := s.AppendTail(rows(4, hd), rows(4, hd)); err != nil || s.Len() != 105 {
		t.Fatalf("AppendTail: %v, Len %d", err, s.Len())
	}
	uneven := rows(4, hd)
	uneven[1][1] = NewF16Rows(hd, make([]float32, 3*hd))
	wide := rows(4, 2*hd)
	for name, tc := range map[string][2][][]Rows{
		"layers":  {rows(4, hd)[:1], rows(4, hd)[:1]},
		"heads":   {{rows(4, hd)[0][:1], rows(4, hd)[1][:1]}, rows(4, hd)},
		"lengths": {rows(4, hd), uneven},
		"values":  {rows(4, hd), rows(5, hd)},
		"dim":     {wide, wide},
		"nil row": {{{nil, nil}, {nil, nil}}, rows(4, hd)},
	} {
		if err := s.AppendTail(tc[0], tc[1]); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: %v, want ErrMismatch", name, err)
		}
		if s.Len() != 105 {
			t.Errorf("%s: a refused tail changed Len to %d", name, s.Len())
		}
	}
	if err := s.AppendTail(rows(3, hd), rows(3, hd)); err != nil || s.Len() != 108 {
		t.Fatalf("second AppendTail: %v, Len %d", err, s.Len())
	}
	s.ClearTail()
	if s.Len() != 101 || s.Tail() != 0 {
		t.Fatalf("cleared: Len %d, Tail %d", s.Len(), s.Tail())
	}
}
