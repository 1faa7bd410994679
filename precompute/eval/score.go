package eval

import (
	"math"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// evaluator holds one Run's buffers, reused from window to window.
type evaluator struct {
	m     *model.Model
	pool  *kernels.Pool
	c, q  int
	block int // query tokens per Forward call in ModePrefill

	full   *model.Cache // the dense reference's cache: c+q positions, f32
	query  *model.Cache // the squeezed runs' cache of the query tokens
	logits []float32    // q x vocab
	// The dense reference's log-softmax at the q-1 scored positions, and its argmaxes.
	denseLP  []float32
	denseTop []int32
	// Per scored position: the squeezed run's log-probability of the target, its KL
	// from the dense distribution, and whether the argmaxes agree.
	lp, kl []float64
	agree  []bool
}

func newEvaluator(m *model.Model, pool *kernels.Pool, c, q int) (*evaluator, error) {
	full, err := m.NewCache(c+q, model.CacheF32)
	if err != nil {
		return nil, err
	}
	query, err := m.NewCache(q, model.CacheF32)
	if err != nil {
		return nil, err
	}
	v := m.Config.Vocab
	return &evaluator{
		m: m, pool: pool, c: c, q: q,
		full: full, query: query,
		logits:   make([]float32, q*v),
		denseLP:  make([]float32, (q-1)*v),
		denseTop: make([]int32, q-1),
		lp:       make([]float64, q-1),
		kl:       make([]float64, q-1),
		agree:    make([]bool, q-1),
	}, nil
}

// dense runs window w through the model with a dense f32 cache, keeps the log-softmax of
// the scored positions and returns the sum of the scored tokens' negative
// log-likelihoods.
func (e *evaluator) dense(w []int32) (float64, error) {
	e.full.Reset()
	if err := e.m.Forward(e.pool, e.full, w[:e.c], nil, nil); err != nil {
		return 0, err
	}
	if err := e.m.Forward(e.pool, e.full, w[e.c:e.c+e.q], e.logits, &model.Options{AllLogits: true}); err != nil {
		return 0, err
	}
	v := e.m.Config.Vocab
	e.pool.For(e.q-1, 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst := e.denseLP[i*v : (i+1)*v]
			logSoftmax(dst, e.logits[i*v:(i+1)*v])
			e.denseTop[i] = argmax(dst)
			e.lp[i] = float64(dst[w[e.c+i+1]])
		}
	})
	var nll float64
	for _, x := range e.lp {
		nll -= x
	}
	return nll, nil
}

// squeezed runs window w's query through a session on sc with c's budget and mode and
// adds the scores, the session's statistics and the attention mass to c's sums.
func (e *evaluator) squeezed(sc *sparse.Context, w []int32, c *config) error {
	s, err := sparse.NewSession(sc, e.m, e.pool, c.budget)
	if err != nil {
		return err
	}
	var ref *sparse.Session
	if !s.Dense() {
		if ref, err = sparse.NewSession(sc, e.m, e.pool, 1); err != nil {
			return err
		}
	}
	p := &massPrefix{s: s, ref: ref}
	e.query.Reset()
	q := w[e.c : e.c+e.q]
	v := e.m.Config.Vocab
	switch c.mode {
	case ModeDecode:
		for i := range q {
			if err := e.forward(p, q[i:i+1], e.logits[i*v:(i+1)*v], nil); err != nil {
				return err
			}
		}
	default:
		for at := 0; at < len(q); at += e.block {
			end := min(at+e.block, len(q))
			if err := e.forward(p, q[at:end], e.logits[at*v:end*v], &model.Options{AllLogits: true}); err != nil {
				return err
			}
		}
	}
	e.pool.For(e.q-1, 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			lg := e.logits[i*v : (i+1)*v]
			logSoftmax(lg, lg)
			e.lp[i] = float64(lg[q[i+1]])
			e.agree[i] = argmax(lg) == e.denseTop[i]
			e.kl[i] = kl(e.denseLP[i*v:(i+1)*v], lg)
		}
	})
	for i := range e.q - 1 {
		c.nll -= e.lp[i]
		c.kl += e.kl[i]
		if e.agree[i] {
			c.top1++
		}
	}
	c.count += e.q - 1
	st := s.Stats()
	c.stats.Lookups += st.Lookups
	c.stats.KeysRead += st.KeysRead
	c.stats.Centroids += st.Centroids
	c.stats.Keys += st.Keys
	c.mass += p.mass
	c.massN += p.massN
	return nil
}

// massPrefix attends through s and, when ref (a dense session on the same context) is
// set, adds up the share of the dense softmax mass the keys s reads hold.
type massPrefix struct {
	s, ref   *sparse.Session
	out, lse []float32 // ref's outputs
	mass     float64
	massN    int64
}

// Len is the number of context positions.
func (p *massPrefix) Len() int { return p.s.Len() }

// Attend is sparse.Session.Attend, measuring the attention mass.
func (p *massPrefix) Attend(layer int, q []float32, n int, out, lse []float32) {
	p.s.Attend(layer, q, n, out, lse)
	if p.ref == nil {
		return
	}
	p.out = grow(p.out, len(out))
	p.lse = grow(p.lse, len(lse))
	p.ref.Attend(layer, q, n, p.out, p.lse)
	for i, all := range p.lse {
		if math.IsInf(float64(all), -1) {
			continue
		}
		p.mass += math.Exp(float64(lse[i] - all))
		p.massN++
	}
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// logSoftmax writes log softmax(x) to dst (which may be x), summing in float64.
func logSoftmax(dst, x []float32) {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v - m))
	}
	z := m + float32(math.Log(sum))
	for i, v := range x {
		dst[i] = v - z
	}
}

// argmax returns the index of the first largest value of x.
func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// kl returns KL(p || q) for log-probabilities lp and lq, in nats.
func kl(lp, lq []float32) float64 {
	var s float64
	for i, a := range lp {
		if math.IsInf(float64(a), -1) {
			continue
		}
		s += math.Exp(float64(a)) * float64(a-lq[i])
	}
	return max(s, 0)
}
