package sparse

import "fmt"

// tailBlock is one (layer, KV head)'s rows of one AppendTail call.
type tailBlock struct{ k, v Rows }

// AppendTail makes the session attend, after the context and the rows appended before,
// to the rows of keys and values: keys[l][h] and values[l][h] are layer l's KV head h's
// keys (after RoPE) and values of the positions from Len() on, the same number of rows
// in every layer and head. A generation moves its oldest tokens out of its model.Cache
// this way (kvquant.Appender): the session's Len() grows by the rows, so the tokens left
// in the cache keep their positions. Every Attend call reads every appended row, whatever
// the budget, as it reads the Always rows, one segment per AppendTail call; the
// statistics do not count them (they measure the lookups in the context). The rows must
// not change while the session uses them. Errors wrap ErrMismatch and leave the session
// as it was.
func (s *Session) AppendTail(keys, values [][]Rows) error {
	if len(keys) != s.layers || len(values) != s.layers {
		return fmt.Errorf("%w: tail of %d and %d layers for %d", ErrMismatch, len(keys), len(values), s.layers)
	}
	n := -1
	for l := range keys {
		if len(keys[l]) != s.kvHeads || len(values[l]) != s.kvHeads {
			return fmt.Errorf("%w: tail layer %d has %d and %d heads for %d", ErrMismatch, l, len(keys[l]), len(values[l]), s.kvHeads)
		}
		for h := range keys[l] {
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
		}
	}
	if n == 0 {
		return nil
	}
	if s.tail == nil {
		s.tail = make([][][]tailBlock, s.layers)
		for l := range s.tail {
			s.tail[l] = make([][]tailBlock, s.kvHeads)
		}
	}
	for l := range keys {
		for h := range keys[l] {
			s.tail[l][h] = append(s.tail[l][h], tailBlock{keys[l][h], values[l][h]})
		}
	}
	s.tailLen += n
	return nil
}

// ClearTail removes the rows AppendTail added.
func (s *Session) ClearTail() { s.tail, s.tailLen = nil, 0 }

// Tail returns the number of positions AppendTail added after the context.
func (s *Session) Tail() int { return s.tailLen }

// appendTail lists KV head g's tail blocks of the current layer as segments of h.
func (s *Session) appendTail(h *headState, g int) {
	if s.tailLen == 0 {
		return
	}
	blocks := s.tail[s.layer][g]
	for len(h.prepT) < len(blocks) {
		h.prepT = append(h.prepT, nil)
	}
	// Grown before the segments point into it.
	if len(h.kindsT) < len(blocks) {
		h.kindsT = make([]rowKinds, len(blocks))
	}
	for i, b := range blocks {
		h.kindsT[i] = kindsOf(b.k, b.v)
		h.segs = append(h.segs, segment{b.k, b.v, 0, b.k.Len(), s.prepare(&h.prepT[i], b.k, h.qs), &h.kindsT[i]})
	}
	h.keys += s.tailLen
}
