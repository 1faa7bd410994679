package sparse

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"squeeze/runtime/index"
	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/model/modeltest"
)

// tinyModel loads a small random model: 2 layers, 4 query heads sharing 2 KV heads of 16
// dimensions.
func tinyModel(tb testing.TB) *model.Model {
	tb.Helper()
	m, err := model.Load(modeltest.Open(tb, modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Vocab: 300, Context: 512}))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// attendFixture is a synthetic context for m with its raw rows kept for references.
type attendFixture struct {
	ctx        *Context
	keys, vals [][]float64 // per layer*kvHeads+head, S x hd, rounded to f16
}

func newAttendFixture(tb testing.TB, m *model.Model, S int, seed uint64) *attendFixture {
	return newAttendFixtureLeaves(tb, m, S, seed, 8)
}

// newAttendFixtureLeaves is newAttendFixture with leaf clusters of leaf keys, four to a
// parent.
func newAttendFixtureLeaves(tb testing.TB, m *model.Model, S int, seed uint64, leaf int) *attendFixture {
	cfg := &m.Config
	rng := rand.New(rand.NewPCG(seed, 1))
	hd := cfg.HeadDim
	raw := map[[3]int][]float32{}
	row := func(kind int) rowsFunc {
		return func(l, h int) []float32 {
			k := [3]int{kind, l, h}
			if raw[k] == nil {
				raw[k] = clustered(rng, S, hd, 8, 1)
			}
			return raw[k]
		}
	}
	var always []int32
	for p := range S {
		if p < 4 || p >= S-8 {
			always = append(always, int32(p))
		}
	}
	f := &attendFixture{ctx: synthContext(tb, cfg.Layers, cfg.KVHeads, hd, S, row(0), row(1), always, leaf, 4)}
	for l := range cfg.Layers {
		for h := range cfg.KVHeads {
			f.keys = append(f.keys, roundF16(raw[[3]int{0, l, h}]))
			f.vals = append(f.vals, roundF16(raw[[3]int{1, l, h}]))
		}
	}
	n := f.ctx.Layers[0][0].Tree.Len()
	tau := float32(math.Log(1 / float64(n)))
	f.ctx.Thresholds = []Threshold{{Budget: 0.5, Fraction: 0.5, LogTau: []float32{tau, tau}}}
	return f
}

// TestAttendMatchesRestrictedReference: a session attends as plain attention over the
// keys its lookups select, with short clusters (spans that chunks gather) and long ones
// (spans that chunks take whole or cut).
func TestAttendMatchesRestrictedReference(t *testing.T) {
	m := tinyModel(t)
	for _, leaf := range []int{8, 70} {
		f := newAttendFixtureLeaves(t, m, attendS, 7, leaf)
		t.Run(fmt.Sprintf("leaves of %d", leaf), func(t *testing.T) { checkAttendRestricted(t, m, f) })
		t.Run(fmt.Sprintf("leaves of %d, short chunks", leaf), func(t *testing.T) {
			withShortChunks(t)
			checkAttendRestricted(t, m, f)
		})
	}
}

// withShortChunks makes every call's chunks short for the rest of the test, so that a
// small context's spans are cut and moved whole.
func withShortChunks(t *testing.T) {
	saved := [4]chunking{decodeSqueezed, decodeDense, batchDense, batchSqueezed}
	decodeSqueezed = chunking{Target: 64, Max: 96, Min: 32}
	decodeDense = chunking{Target: 100, Max: 100, Min: 50}
	batchDense = chunking{Target: 48, Max: 48, Min: 24}
	batchSqueezed = chunking{Target: 96, Max: 96, Min: 48}
	t.Cleanup(func() {
		decodeSqueezed, decodeDense, batchDense, batchSqueezed = saved[0], saved[1], saved[2], saved[3]
	})
}

// attendS is the number of context positions of TestAttendMatchesRestrictedReference.
const attendS = 701

func checkAttendRestricted(t *testing.T, m *model.Model, f *attendFixture) {
	cfg := &m.Config
	hd, group := cfg.HeadDim, cfg.Heads/cfg.KVHeads
	const S = attendS
	for _, tc := range []struct {
		name    string
		budget  float64
		n       int
		threads int
	}{
		{"decode sparse", 0.5, 1, 1},
		{"decode sparse threads", 0.5, 1, 4},
		{"prefill sparse", 0.5, 6, 3},
		{"decode dense", 1, 1, 2},
		{"decode dense split", 1, 1, 4},
		{"prefill dense split", 1, 7, 6},
		{"prefill batched sparse", 0.5, 9, 2},
		{"prefill batched dense split", 1, 10, 4},
		{"prefill dense", 1, 5, 1},
	} {
		for _, wrap := range []bool{false, true} {
			ctx := f.ctx
			if wrap {
				tc.name += " generic rows"
				ctx = wrapRows(f.ctx)
			}
			t.Run(tc.name, func(t *testing.T) {
				pool := kernels.NewPool(tc.threads)
				defer pool.Close()
				s, err := NewSession(ctx, m, pool, tc.budget)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(3, uint64(tc.n)))
				partial := false
				var want Stats
				for layer := range cfg.Layers {
					q := randVec(rng, tc.n*cfg.QDim(), 0.6)
					out := make([]float32, tc.n*cfg.QDim())
					lse := make([]float32, tc.n*cfg.Heads)
					s.Attend(layer, q, tc.n, out, lse)
					for g := range cfg.KVHeads {
						head := &f.ctx.Layers[layer][g]
						positions := append([]int32(nil), head.Always...)
						var sel index.Selection
						if tc.budget < 1 {
							qg := make([]float32, 0, tc.n*group*hd)
							for i := range tc.n {
								qg = append(qg, q[i*cfg.QDim()+g*group*hd:i*cfg.QDim()+(g+1)*group*hd]...)
							}
							for i := range qg {
								qg[i] *= float32(math.Sqrt(float64(hd)))
							}
							head.Tree.Lookup(&index.Searcher{}, qg, group, f.ctx.Thresholds[0].LogTau, &sel)
							for _, sp := range sel.Spans {
								positions = append(positions, head.Tree.Order()[sp.Start:sp.End]...)
							}
							partial = partial || sel.Keys < head.Tree.Len()
						} else {
							positions = append(positions, head.Tree.Order()...)
						}
						want.Lookups++
						want.KeysRead += int64(len(positions))
						want.Centroids += int64(sel.Centroids)
						want.Keys += S
						for i := range tc.n {
							for gh := range group {
								qi := i*cfg.Heads + g*group + gh
								ref, refLSE := naiveAttend(q[qi*hd:(qi+1)*hd], f.keys[layer*cfg.KVHeads+g], f.vals[layer*cfg.KVHeads+g], hd, positions)
								if d := math.Abs(float64(lse[qi]) - refLSE); d > 1e-4*max(1, math.Abs(refLSE)) {
									t.Fatalf("layer %d token %d head %d: lse %v, want %v", layer, i, qi%cfg.Heads, lse[qi], refLSE)
								}
								for d := range hd {
									if diff := math.Abs(float64(out[qi*hd+d]) - ref[d]); diff > 2e-5+1e-4*math.Abs(ref[d]) {
										t.Fatalf("layer %d token %d head %d dim %d: %v, want %v", layer, i, qi%cfg.Heads, d, out[qi*hd+d], ref[d])
									}
								}
							}
						}
					}
				}
				if tc.budget < 1 && !partial {
					t.Fatal("the threshold selected every key: the test checks nothing sparse")
				}
				if got := s.Stats(); got != want {
					t.Fatalf("stats %+v, want %+v", got, want)
				}
				rb := s.Stats().RealizedBudget()
				wantRB := float64(want.KeysRead+want.Centroids) / float64(want.Keys)
				if math.Abs(rb-wantRB) > 1e-12 || (tc.budget >= 1) != (rb == 1) {
					t.Fatalf("realized budget %v, want %v", rb, wantRB)
				}
			})
		}
	}
}

// genericRows hides an F16Rows behind the Rows interface, so that the attention takes
// the path of other encodings (Dots and Accumulate per piece).
type genericRows struct{ r *F16Rows }

func (g genericRows) Len() int                                { return g.r.Len() }
func (g genericRows) Dots(dst, q []float32, lo, hi int)       { g.r.Dots(dst, q, lo, hi) }
func (g genericRows) Accumulate(out, w []float32, lo, hi int) { g.r.Accumulate(out, w, lo, hi) }

// wrapRows returns a copy of c whose rows are genericRows.
func wrapRows(c *Context) *Context {
	w := *c
	w.Layers = make([][]Head, len(c.Layers))
	for l := range c.Layers {
		for _, h := range c.Layers[l] {
			h.Keys, h.Values = genericRows{h.Keys.(*F16Rows)}, genericRows{h.Values.(*F16Rows)}
			h.AlwaysK, h.AlwaysV = genericRows{h.AlwaysK.(*F16Rows)}, genericRows{h.AlwaysV.(*F16Rows)}
			w.Layers[l] = append(w.Layers[l], h)
		}
	}
	return &w
}

func TestThresholdChoice(t *testing.T) {
	c := &Context{Thresholds: []Threshold{{Budget: 0.125}, {Budget: 0.25}, {Budget: 0.5}}}
	for _, tc := range []struct {
		budget float64
		want   float64
		dense  bool
		err    error
	}{
		{0.25, 0.25, false, nil},
		{0.3, 0.25, false, nil},
		{0.99, 0.5, false, nil},
		{1, 1, true, nil},
		{2, 1, true, nil},
		{0.1, 0, false, ErrBudget},
	} {
		th, dense, err := c.Threshold(tc.budget)
		if !errors.Is(err, tc.err) || dense != tc.dense || (err == nil && th.Budget != tc.want) {
			t.Errorf("Threshold(%g) = %v, %v, %v; want budget %v, %v, %v", tc.budget, th.Budget, dense, err, tc.want, tc.dense, tc.err)
		}
	}
}

func TestNewSessionMismatch(t *testing.T) {
	m := tinyModel(t)
	f := newAttendFixture(t, m, 100, 1)
	pool := kernels.NewPool(1)
	defer pool.Close()
	for _, tc := range []struct {
		name   string
		modify func(c *Context)
	}{
		{"layers", func(c *Context) { c.Layers = c.Layers[:1] }},
		{"heads", func(c *Context) { c.Layers[1] = c.Layers[1][:1] }},
		{"tokens", func(c *Context) { c.Tokens = c.Tokens[1:] }},
		{"values", func(c *Context) { c.Layers[0][1].Values = &F16Rows{Dim: 16} }},
		{"always", func(c *Context) { c.Layers[0][0].AlwaysV = &F16Rows{Dim: 16} }},
		{"levels", func(c *Context) { c.Thresholds[0].LogTau = c.Thresholds[0].LogTau[:1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *f.ctx
			c.Layers = make([][]Head, len(f.ctx.Layers))
			for l := range c.Layers {
				c.Layers[l] = append([]Head(nil), f.ctx.Layers[l]...)
			}
			c.Thresholds = []Threshold{{Budget: 0.5, LogTau: append([]float32(nil), f.ctx.Thresholds[0].LogTau...)}}
			tc.modify(&c)
			if _, err := NewSession(&c, m, pool, 0.5); !errors.Is(err, ErrMismatch) {
				t.Fatalf("err = %v, want ErrMismatch", err)
			}
		})
	}
}

func TestAttendDecodeAllocs(t *testing.T) {
	m := tinyModel(t)
	cfg := &m.Config
	f := newAttendFixture(t, m, 400, 2)
	pool := kernels.NewPool(2)
	defer pool.Close()
	for _, budget := range []float64{0.5, 1} {
		s, err := NewSession(f.ctx, m, pool, budget)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		q := randVec(rng, cfg.QDim(), 0.6)
		out := make([]float32, cfg.QDim())
		lse := make([]float32, cfg.Heads)
		step := func() {
			for l := range cfg.Layers {
				s.Attend(l, q, 1, out, lse)
			}
		}
		step()
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("budget %g: %v allocations per decode step", budget, a)
		}
	}
}

// TestAttendExact checks that AttendExact gives every token of a batch bitwise the
// output, log-sum-exp and statistics of a one-token Attend call: dense and squeezed,
// f16 and generic rows, with few query heads per KV head (values added row by row), with
// enough that the batch's vectors but not one token's reach the batched products, and
// with many (one matrix product per chunk), on one thread and several, with the default
// chunks and short ones.
func TestAttendExact(t *testing.T) {
	t.Run("default chunks", checkAttendExact)
	t.Run("short chunks", func(t *testing.T) {
		withShortChunks(t)
		checkAttendExact(t)
	})
}

func checkAttendExact(t *testing.T) {
	models := []struct {
		name string
		spec modeltest.Spec
	}{
		{"group 2", modeltest.Spec{Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, Vocab: 300, Context: 512}},
		// A batch of 5 tokens has 20 vectors, enough for the batched products that a
		// one-token call (4 vectors) does not use.
		{"group 4", modeltest.Spec{Layers: 2, Dim: 64, Heads: 8, KVHeads: 2, HeadDim: 16, Vocab: 300, Context: 512}},
		{"group 16", modeltest.Spec{Layers: 2, Dim: 64, Heads: 32, KVHeads: 2, HeadDim: 16, Vocab: 300, Context: 512}},
	}
	for _, mc := range models {
		m, err := model.Load(modeltest.Open(t, mc.spec))
		if err != nil {
			t.Fatal(err)
		}
		cfg := &m.Config
		f := newAttendFixture(t, m, 301, 11)
		for _, budget := range []float64{1, 0.5} {
			for _, wrap := range []bool{false, true} {
				for _, threads := range []int{1, 3} {
					ctx := f.ctx
					if wrap {
						ctx = wrapRows(f.ctx)
					}
					pool := kernels.NewPool(threads)
					defer pool.Close()
					batch, err := NewSession(ctx, m, pool, budget)
					if err != nil {
						t.Fatal(err)
					}
					one, err := NewSession(ctx, m, pool, budget)
					if err != nil {
						t.Fatal(err)
					}
					const n = 5
					qd := cfg.QDim()
					rng := rand.New(rand.NewPCG(4, 5))
					for layer := range cfg.Layers {
						q := randVec(rng, n*qd, 0.6)
						out := make([]float32, n*qd)
						lse := make([]float32, n*cfg.Heads)
						batch.AttendExact(layer, q, n, out, lse)
						wantOut := make([]float32, n*qd)
						wantLSE := make([]float32, n*cfg.Heads)
						for i := range n {
							one.Attend(layer, q[i*qd:(i+1)*qd], 1, wantOut[i*qd:(i+1)*qd], wantLSE[i*cfg.Heads:(i+1)*cfg.Heads])
						}
						for i := range out {
							if out[i] != wantOut[i] {
								t.Fatalf("%s budget %v generic %v threads %d layer %d: output %d = %v, one token at a time %v",
									mc.name, budget, wrap, threads, layer, i, out[i], wantOut[i])
							}
						}
						for i := range lse {
							if lse[i] != wantLSE[i] {
								t.Fatalf("%s budget %v generic %v threads %d layer %d: lse %d = %v, one token at a time %v",
									mc.name, budget, wrap, threads, layer, i, lse[i], wantLSE[i])
							}
						}
					}
					if batch.Stats() != one.Stats() {
						t.Fatalf("%s budget %v: stats %+v, one token at a time %+v", mc.name, budget, batch.Stats(), one.Stats())
					}
				}
			}
		}
	}
}

// TestForwardExactWithSession checks that a model.Options.Exact pass over a session
// (dense and squeezed) gives a batch of tokens bitwise the logits of one-token passes.
func TestForwardExactWithSession(t *testing.T) {
	m := tinyModel(t)
	pool := kernels.NewPool(3)
	defer pool.Close()
	ctx := prefilledContext(t, m, pool, randomTokens(120, m.Config.Vocab, 1))
	prompt := randomTokens(7, m.Config.Vocab, 2)
	tokens := randomTokens(6, m.Config.Vocab, 3)
	vocab := m.Config.Vocab
	for _, budget := range []float64{1, 0.5} {
		run := func(exact bool) ([]float32, Stats) {
			s, err := NewSession(ctx, m, pool, budget)
			if err != nil {
				t.Fatal(err)
			}
			c, err := m.NewCache(32, model.CacheF16)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(pool, c, prompt, nil, &model.Options{Prefix: s}); err != nil {
				t.Fatal(err)
			}
			s.ResetStats()
			logits := make([]float32, len(tokens)*vocab)
			if exact {
				err = m.Forward(pool, c, tokens, logits, &model.Options{Prefix: s, Exact: true, AllLogits: true})
			} else {
				for i, tok := range tokens {
					if err = m.Forward(pool, c, []int32{tok}, logits[i*vocab:(i+1)*vocab], &model.Options{Prefix: s}); err != nil {
						break
					}
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			return logits, s.Stats()
		}
		got, gotStats := run(true)
		want, wantStats := run(false)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("budget %v: logit %d of the exact batch = %v, one token at a time %v", budget, i, got[i], want[i])
			}
		}
		if gotStats != wantStats {
			t.Fatalf("budget %v: stats %+v, one token at a time %+v", budget, gotStats, wantStats)
		}
	}
}

func TestChunkingFit(t *testing.T) {
	c := chunking{Target: 128, Max: 192, Min: 64}
	for _, tc := range []struct {
		fill, rest int
		flush      bool
		take       int
	}{
		{0, 10, false, 10},
		{0, 192, false, 192},   // a span that fills a chunk alone stays whole
		{0, 193, false, 192},   // a longer one is cut
		{100, 92, false, 92},   // fits: added whole
		{100, 93, true, 93},    // does not fit: the next chunk takes it whole
		{63, 150, false, 129},  // too little in the chunk to compute it yet: cut
		{64, 150, true, 150},   // enough: computed first
		{100, 197, false, 92},  // longer than any chunk: cut anyway
		{127, 65, false, 65},   // fits exactly
		{127, 1000, false, 65}, // cut to fill the chunk
	} {
		flush, take := c.fit(tc.fill, tc.rest)
		if flush != tc.flush || take != tc.take {
			t.Errorf("fit(%d, %d) = %v, %d; want %v, %d", tc.fill, tc.rest, flush, take, tc.flush, tc.take)
		}
	}
}

// TestChunkingOf: an exact call chunks as the one-token calls it stands for, a dense
// batch of many vectors takes short chunks, and a squeezed one the longest whose scores
// fit batchScores.
func TestChunkingOf(t *testing.T) {
	s := &Session{group: 3}
	for _, tc := range []struct {
		vecs         int
		exact, dense bool
		want         chunking
	}{
		{3, false, false, decodeSqueezed},
		{3, false, true, decodeDense},
		{24, true, true, decodeDense}, // 8 tokens of an exact (dense) call
		{24, false, true, batchDense},
		{minBatchedVecs, false, false, batchSqueezed},
		{192, false, false, batchSqueezed},                              // a 64-token query
		{1536, false, false, chunking{Target: 256, Max: 256, Min: 128}}, // 512 tokens: scores within batchScores
		{1 << 14, false, false, chunking{Target: 128, Max: 128, Min: 64}},
	} {
		s.vecs, s.exact, s.dense = tc.vecs, tc.exact, tc.dense
		if got := s.chunkingOf(); got != tc.want {
			t.Errorf("%d vectors, exact %v, dense %v: %+v, want %+v", tc.vecs, tc.exact, tc.dense, got, tc.want)
		}
	}
}
