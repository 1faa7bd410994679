package model

import (
	"math"
	"testing"

	"squeeze/runtime/kernels"
)

// naiveModel is an obviously correct transformer in float64, written from the
// architecture's definition with plain loops, to check Forward against.
type naiveModel struct {
	cfg     Config
	embed   [][]float64 // vocab x dim
	layers  []naiveLayer
	outNorm []float64
	output  [][]float64 // vocab x dim
	// ropeFactors divide the RoPE angles (rope_freqs.weight), or nil.
	ropeFactors []float64
}

type naiveLayer struct {
	attnNorm, ffnNorm []float64
	wq, wk, wv, wo    [][]float64 // rows x cols
	bq, bk, bv        []float64
	gate, up, down    [][]float64
}

// newNaive decodes every weight of m to float64 with the reference dequantizers.
func newNaive(t testing.TB, m *Model) *naiveModel {
	t.Helper()
	mat := func(w *kernels.Matrix) [][]float64 {
		rows := make([][]float64, w.Rows)
		buf := make([]float32, w.Cols)
		for r := range rows {
			if err := kernels.Dequantize(w.Type, buf, w.Data[r*w.RowBytes:(r+1)*w.RowBytes]); err != nil {
				t.Fatal(err)
			}
			rows[r] = vec(buf)
		}
		return rows
	}
	n := &naiveModel{cfg: m.Config, embed: mat(m.embed), outNorm: vec(m.outNorm), output: mat(m.output), ropeFactors: vec(m.ropeFactors)}
	for _, l := range m.layers {
		n.layers = append(n.layers, naiveLayer{
			attnNorm: vec(l.attnNorm), ffnNorm: vec(l.ffnNorm),
			wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), wo: mat(l.wo),
			bq: vec(l.bq), bk: vec(l.bk), bv: vec(l.bv),
			gate: mat(l.gate), up: mat(l.up), down: mat(l.down),
		})
	}
	return n
}

func vec(x []float32) []float64 {
	if x == nil {
		return nil
	}
	v := make([]float64, len(x))
	for i, f := range x {
		v[i] = float64(f)
	}
	return v
}

func naiveMatVec(w [][]float64, x []float64) []float64 {
	y := make([]float64, len(w))
	for r, row := range w {
		for c, v := range row {
			y[r] += v * x[c]
		}
	}
	return y
}

func naiveRMSNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = v * inv * w[i]
	}
	return y
}

// naiveRoPE rotates each head of x for position pos.
func (n *naiveModel) rope(x []float64, pos int) {
	c := &n.cfg
	half := c.RopeDim / 2
	for h := 0; h < len(x); h += c.HeadDim {
		for i := range half {
			theta := float64(pos) * c.RopeScale * math.Pow(c.RopeBase, -float64(2*i)/float64(c.RopeDim))
			if n.ropeFactors != nil {
				theta /= n.ropeFactors[i]
			}
			a, b := h+2*i, h+2*i+1
			if c.NeoX {
				a, b = h+i, h+i+half
			}
			x0, x1 := x[a], x[b]
			x[a] = x0*math.Cos(theta) - x1*math.Sin(theta)
			x[b] = x0*math.Sin(theta) + x1*math.Cos(theta)
		}
	}
}

// forward returns the logits of every token of a sequence starting at position 0.
func (n *naiveModel) forward(tokens []int32) [][]float64 { return n.perturbed(tokens, nil) }

// perturbed is forward with edit, if not nil, called on every layer's key and value of
// each token (after the projections and biases, before RoPE) to change them in place.
func (n *naiveModel) perturbed(tokens []int32, edit func(layer, token int, key, val []float64)) [][]float64 {
	c := &n.cfg
	eps := float64(c.NormEps)
	xs := make([][]float64, len(tokens))
	for i, t := range tokens {
		xs[i] = append([]float64(nil), n.embed[t]...)
	}
	for li, l := range n.layers {
		keys := make([][]float64, len(tokens))
		vals := make([][]float64, len(tokens))
		qs := make([][]float64, len(tokens))
		for i, x := range xs {
			h := naiveRMSNorm(x, l.attnNorm, eps)
			qs[i], keys[i], vals[i] = naiveMatVec(l.wq, h), naiveMatVec(l.wk, h), naiveMatVec(l.wv, h)
			if l.bq != nil {
				for j := range qs[i] {
					qs[i][j] += l.bq[j]
				}
				for j := range keys[i] {
					keys[i][j] += l.bk[j]
					vals[i][j] += l.bv[j]
				}
			}
			if edit != nil {
				edit(li, i, keys[i], vals[i])
			}
			n.rope(qs[i], i)
			n.rope(keys[i], i)
		}
		group := c.Heads / c.KVHeads
		for i, x := range xs {
			att := make([]float64, c.QDim())
			for h := range c.Heads {
				g := h / group
				q := qs[i][h*c.HeadDim : (h+1)*c.HeadDim]
				scores := make([]float64, i+1)
				maxScore := math.Inf(-1)
				for j := range scores {
					k := keys[j][g*c.HeadDim : (g+1)*c.HeadDim]
					for d := range q {
						scores[j] += q[d] * k[d]
					}
					scores[j] /= math.Sqrt(float64(c.HeadDim))
					maxScore = max(maxScore, scores[j])
				}
				var sum float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - maxScore)
					sum += scores[j]
				}
				for j, s := range scores {
					v := vals[j][g*c.HeadDim : (g+1)*c.HeadDim]
					for d := range v {
						att[h*c.HeadDim+d] += s / sum * v[d]
					}
				}
			}
			o := naiveMatVec(l.wo, att)
			for d := range x {
				x[d] += o[d]
			}
			h := naiveRMSNorm(x, l.ffnNorm, eps)
			g, u := naiveMatVec(l.gate, h), naiveMatVec(l.up, h)
			for d := range g {
				g[d] = g[d] / (1 + math.Exp(-g[d])) * u[d]
			}
			o = naiveMatVec(l.down, g)
			for d := range x {
				x[d] += o[d]
			}
		}
	}
	logits := make([][]float64, len(tokens))
	for i, x := range xs {
		logits[i] = naiveMatVec(n.output, naiveRMSNorm(x, n.outNorm, eps))
	}
	return logits
}

// relDiff64 returns max |a-b| / max |b|.
func relDiff64(a []float32, b []float64) float64 {
	var d, s float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-b[i]))
		s = max(s, math.Abs(b[i]))
	}
	return d / s
}

// compareNaive runs tokens through m in one batch with a cache of the given kind, and
// through the naive float64 model, and returns the worst max|diff|/max|logit| over the
// tokens.
func compareNaive(t *testing.T, m *Model, kind CacheType, tokens []int32) float64 {
	t.Helper()
	want := newNaive(t, m).forward(tokens)
	p := kernels.NewPool(2)
	defer p.Close()
	vocab := m.Config.Vocab
	c, err := m.NewCache(len(tokens), kind)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, len(tokens)*vocab)
	if err := m.Forward(p, c, tokens, logits, &Options{AllLogits: true}); err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range tokens {
		worst = max(worst, relDiff64(logits[i*vocab:(i+1)*vocab], want[i]))
	}
	return worst
}
