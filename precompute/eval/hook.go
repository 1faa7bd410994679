package eval

import (
	"errors"

	"squeeze/runtime/model"
)

// forward runs tokens after the squeezed context p, appending them to e.query.
func (e *evaluator) forward(p *massPrefix, tokens []int32, logits []float32, opt *model.Options) error {
	_ = p
	return errors.New("eval: the model has no prefix-attention hook yet")
}
