package eval

import "squeeze/runtime/model"

// forward runs tokens after the squeezed context p (positions p.Len()+e.query.Len()...),
// appending their keys and values to e.query.
func (e *evaluator) forward(p *massPrefix, tokens []int32, logits []float32, opt *model.Options) error {
	o := model.Options{Prefix: p}
	if opt != nil {
		o.AllLogits = opt.AllLogits
	}
	return e.m.Forward(e.pool, e.query, tokens, logits, &o)
}
