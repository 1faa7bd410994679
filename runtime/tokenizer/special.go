package tokenizer

import (
	"cmp"
	"slices"
)

// specialMatcher finds special tokens in text. It reproduces llama.cpp's
// tokenizer_st_partition: special tokens are taken longest first (equal lengths by id);
// for each, its non-overlapping occurrences are claimed left to right in the parts of the
// text no earlier token claimed. A trie over the token texts finds all occurrences in
// one pass; the claiming then replays llama.cpp's order.
type specialMatcher struct {
	ids   []int32 // special tokens in claiming order
	texts []string
	// always[i] says ids[i] is matched even without special parsing (user-defined).
	always    []bool
	anyAlways bool
	nodes     []trieNode
	root      [256]int32 // child of the root for each first byte, 0 if none
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into ids of the token ending here, -1 if none
}

// fragment is a piece of the input: a special token (id >= 0) or plain text
// text[start:end] (id = -1).
type fragment struct {
	start, end int
	id         int32
}

// newSpecialMatcher indexes the control, user-defined and unknown tokens of a vocabulary.
func newSpecialMatcher(tokens []string, types []TokenType) *specialMatcher {
	m := &specialMatcher{nodes: []trieNode{{tok: -1}}}
	for id, typ := range types {
		if tokens[id] == "" {
			continue
		}
		if typ == TypeControl || typ == TypeUserDefined || typ == TypeUnknown {
			m.ids = append(m.ids, int32(id))
		}
	}
	slices.SortStableFunc(m.ids, func(a, b int32) int {
		return cmp.Compare(len(tokens[b]), len(tokens[a]))
	})
	for i, id := range m.ids {
		text := tokens[id]
		m.texts = append(m.texts, text)
		m.always = append(m.always, types[id] == TypeUserDefined)
		n := int32(0)
		for j := 0; j < len(text); j++ {
			next, ok := m.nodes[n].next[text[j]]
			if !ok {
				next = int32(len(m.nodes))
				m.nodes = append(m.nodes, trieNode{tok: -1})
				if m.nodes[n].next == nil {
					m.nodes[n].next = make(map[byte]int32)
				}
				m.nodes[n].next[text[j]] = next
			}
			n = next
		}
		m.anyAlways = m.anyAlways || m.always[i]
		if m.nodes[n].tok < 0 { // equal texts: the first in order wins, as in llama.cpp
			m.nodes[n].tok = int32(i)
		}
	}
	for b, n := range m.nodes[0].next {
		m.root[b] = n
	}
	return m
}

// split cuts text into fragments at the special tokens it contains; parseSpecial admits
// control and unknown tokens besides the user-defined ones. It returns nil when text
// contains no special token.
func (m *specialMatcher) split(text string, parseSpecial bool) []fragment {
	if len(m.ids) == 0 || !parseSpecial && !m.anyAlways {
		return nil
	}
	type occurrence struct {
		tok int32 // index into m.ids
		pos int
	}
	var occ []occurrence
	for pos := 0; pos < len(text); pos++ {
		n := m.root[text[pos]]
		ok := n != 0
		for j := pos + 1; ok; j++ {
			if tok := m.nodes[n].tok; tok >= 0 && (parseSpecial || m.always[tok]) {
				occ = append(occ, occurrence{tok, pos})
			}
			if j == len(text) {
				break
			}
			n, ok = m.nodes[n].next[text[j]]
		}
	}
	if len(occ) == 0 {
		return nil
	}
	slices.SortFunc(occ, func(a, b occurrence) int {
		if c := cmp.Compare(a.tok, b.tok); c != 0 {
			return c
		}
		return cmp.Compare(a.pos, b.pos)
	})
	claimed := make([]bool, len(text))
	var found []fragment
	lastTok, lastEnd := int32(-1), 0
	for _, o := range occ {
		if o.tok != lastTok {
			lastTok, lastEnd = o.tok, 0
		}
		end := o.pos + len(m.texts[o.tok])
		if o.pos < lastEnd || slices.Contains(claimed[o.pos:end], true) {
			continue
		}
		for i := o.pos; i < end; i++ {
			claimed[i] = true
		}
		lastEnd = end
		found = append(found, fragment{start: o.pos, end: end, id: m.ids[o.tok]})
	}
	slices.SortFunc(found, func(a, b fragment) int { return cmp.Compare(a.start, b.start) })
	frags := make([]fragment, 0, 2*len(found)+1)
	at := 0
	for _, f := range found {
		if f.start > at {
			frags = append(frags, fragment{start: at, end: f.start, id: -1})
		}
		frags = append(frags, f)
		at = f.end
	}
	if at < len(text) {
		frags = append(frags, fragment{start: at, end: len(text), id: -1})
	}
	return frags
}
