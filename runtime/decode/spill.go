package decode

import (
	"fmt"

	"squeeze/runtime/model"
)

// Spiller moves a generation's oldest tokens from its KV cache into the Prefix the
// generation attends to (kvquant.Appender does, quantizing their values on the way as
// KVQuant does).
type Spiller interface {
	// Spill moves the first n positions of c into the Prefix: afterwards c no longer
	// holds them (model.Cache.DropFront) and the Prefix's Len() has grown by n, so that
	// c's other tokens keep their positions.
	Spill(c *model.Cache, n int) error
}

// Spill says when a generation moves tokens out of its KV cache (Options.Spill): before
// a token runs at cache position After+Block, the oldest Block tokens move to To. So the
// cache holds at most After+Block tokens (or the prompt, if longer), and its memory is
// sized for that. The moves fall at the same tokens whether the tokens are decoded one
// at a time or verified in drafts: a verification pass that reaches such a position runs
// in two parts with the move between them, each token computed as plain decoding
// computes it (model.Options.Exact), so speculative decoding keeps plain decoding's
// tokens (an Observer then gets each part's rows in its own call). A move takes only
// tokens older than the pass's rows, which no rollback reaches: a rollback drops
// rejected rows of the current pass.
type Spill struct {
	// To takes the tokens.
	To Spiller
	// After is the number of recent tokens that always stay in the cache, at least
	// MinSpillAfter; a verification pass must not have more than After+1 rows (drafts
	// are far shorter: speculate.DefaultMaxDraft).
	After int
	// Block is the number of tokens moved at once (at least 1): a few hundred amortize
	// the cost of each move over as many decoding steps.
	Block int
}

// Spill's defaults and limits.
const (
	// DefaultSpillAfter and DefaultSpillBlock move 256 tokens at a time once the cache
	// holds 768, keeping the last 512 to 767 in the cache.
	DefaultSpillAfter = 512
	DefaultSpillBlock = 256
	// MinSpillAfter is the smallest Spill.After.
	MinSpillAfter = 16
)

// check reports a Spill that cannot run, wrapping ErrOptions.
func (s *Spill) check(prefix model.Prefix) error {
	switch {
	case s.To == nil:
		return fmt.Errorf("%w: spill to nothing", ErrOptions)
	case prefix == nil:
		return fmt.Errorf("%w: spill without a prefix to take the tokens", ErrOptions)
	case s.After < MinSpillAfter:
		return fmt.Errorf("%w: spill after %d tokens, want at least %d", ErrOptions, s.After, MinSpillAfter)
	case s.Block < 1:
		return fmt.Errorf("%w: spill blocks of %d tokens, want at least 1", ErrOptions, s.Block)
	}
	return nil
}

// settle moves blocks of the oldest tokens out of the cache while it holds After+Block
// tokens or more: what must happen before a token runs at cache position Len().
func (l *modelLM) settle() error {
	s := l.spill
	if s == nil {
		return nil
	}
	for l.c.Len() >= s.After+s.Block {
		if err := s.To.Spill(l.c, s.Block); err != nil {
			return fmt.Errorf("move %d tokens out of the KV cache: %w", s.Block, err)
		}
		l.moved += s.Block
	}
	return nil
}

// verifySpilling is verify with spills: the tokens run in parts that end where a move is
// due, each part exact (every token as a one-token pass computes it), with the moves
// between the parts, as decoding them one at a time would move.
func (l *modelLM) verifySpilling(tokens []int32, logits []float32) error {
	s := l.spill
	if len(tokens) > s.After+1 {
		return fmt.Errorf("%w: a verification pass of %d tokens with spills after %d", ErrOptions, len(tokens), s.After)
	}
	vocab := l.m.Config.Vocab
	for i := 0; i < len(tokens); {
		if err := l.settle(); err != nil {
			return err
		}
		k := min(len(tokens)-i, s.After+s.Block-l.c.Len())
		if err := l.m.Forward(l.p, l.c, tokens[i:i+k], logits[i*vocab:(i+k)*vocab], &l.pass); err != nil {
			return err
		}
		i += k
	}
	return nil
}
