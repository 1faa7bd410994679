package sparse

import "fmt"

// tailHead is one (layer, KV head)'s tail rows.
type tailHead struct{ k, v Rows }

// SetTail makes the session attend, after the context, to the rows of keys and values:
// keys[l][h] and values[l][h] are layer l's KV head h's keys (after RoPE) and values of
// the positions Len() counted before the call and on, the same number of rows in every
// layer and head. A generation moves its oldest tokens out of its model.Cache this way
// (kvquant.Appender): the session's Len() grows by the tail's rows, so the tokens left in
// the cache keep their positions. Every Attend call reads the whole tail, whatever the
// budget, as it reads the Always rows; the statistics do not count it (they measure the
// lookups in the context). Each call replaces the previous tail; nil clears it. The rows
// must not change while the session uses them. Errors wrap ErrMismatch.
func (s *Session) SetTail(keys, values [][]Rows) error {
	if keys == nil && values == nil {
		s.tail, s.tailLen = nil, 0
		return nil
	}
	if len(keys) != s.layers || len(values) != s.layers {
		return fmt.Errorf("%w: tail of %d and %d layers for %d", ErrMismatch, len(keys), len(values), s.layers)
	}
	tail := make([][]tailHead, s.layers)
	n := -1
	for l := range tail {
		if len(keys[l]) != s.kvHeads || len(values[l]) != s.kvHeads {
			return fmt.Errorf("%w: tail layer %d has %d and %d heads for %d", ErrMismatch, l, len(keys[l]), len(values[l]), s.kvHeads)
		}
		tail[l] = make([]tailHead, s.kvHeads)
		for h := range tail[l] {
			k, v := keys[l][h], values[l][h]
			if k == nil || v == nil {
				return fmt.Errorf("%w: tail layer %d head %d is incomplete", ErrMismatch, l, h)
			}
			if n < 0 {
				n = k.Len()
			}
			if k.Len() != n || v.Len() != n {
				return fmt.Errorf("%w: tail layer %d head %d has %d keys and %d values, layer 0 head 0 %d",
					ErrMismatch, l, h, k.Len(), v.Len(), n)
			}
			if d, ok := k.(*F16Rows); ok && d.Dim != s.hd {
				return fmt.Errorf("%w: tail layer %d head %d: rows of %d values", ErrMismatch, l, h, d.Dim)
			}
			tail[l][h] = tailHead{k, v}
		}
	}
	s.tail, s.tailLen = tail, n
	return nil
}

// Tail returns the number of positions SetTail added after the context.
func (s *Session) Tail() int { return s.tailLen }
