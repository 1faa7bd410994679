package tokenizer

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// spmSpace is the character SentencePiece writes for a space, U+2581.
const spmSpace = "▁"

// spmModel is SentencePiece BPE as llama.cpp's llm_tokenizer_spm_session runs it: the
// text, with spaces written as "▁", starts as one symbol per character; the adjacent
// pair whose concatenation is a token with the highest score is merged (leftmost first on
// equal scores) until no adjacent pair forms a token. A final symbol that is no token is
// written as byte tokens <0xNN>.
type spmModel struct {
	ids     map[string]int32
	scores  []float32
	byteTok [256]int32 // token for each byte, -1 if none
}

func newSPM(t *Tokenizer, scores []float32) *spmModel {
	m := &spmModel{ids: t.ids, scores: make([]float32, len(t.tokens))}
	copy(m.scores, scores)
	for b := range 256 {
		// As llama.cpp's byte_to_token: the <0xNN> token, else the byte as a
		// one-character token, else the unknown token.
		id, ok := t.ids[fmt.Sprintf("<0x%02X>", b)]
		if !ok {
			id, ok = t.ids[string([]byte{byte(b)})]
		}
		if !ok {
			id = t.unk
		}
		m.byteTok[b] = id
	}
	return m
}

// scoreKey maps a score to a queue priority: higher scores give lower priorities, and
// equal scores equal priorities (the bits of the float, flipped to sort as unsigned
// integers, then reversed; -0 counts as 0).
func scoreKey(score float32) uint32 {
	if score == 0 {
		score = 0
	}
	bits := math.Float32bits(score)
	if bits>>31 != 0 {
		bits = ^bits
	} else {
		bits |= 1 << 31
	}
	return ^bits
}

// encode appends the ids of text (plain text, no special tokens) to out; prefix puts a
// "▁" before it.
func (m *spmModel) encode(out []int32, text string, prefix bool) []int32 {
	if prefix {
		text = " " + text
	}
	s := strings.ReplaceAll(text, " ", spmSpace)
	// Symbols: start offset and length of each character; merged symbols grow to the
	// right and their right neighbours get length 0.
	var start, size, prev, next []int32
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		k := int32(len(start))
		start = append(start, int32(i))
		size = append(size, int32(n))
		prev = append(prev, k-1)
		next = append(next, k+1)
		i += n
	}
	if len(start) == 0 {
		return out
	}
	next[len(next)-1] = -1
	// Candidate merges: queueKey(scoreKey(score), left position). As in bpeWork.run, a
	// candidate is checked when it comes out of the queue: it is current if its left
	// symbol is alive and, with its right neighbour, forms a token of the queued score.
	// Every adjacent pair that forms a token has an entry, so the merge order is exactly
	// "highest score, then leftmost", as in llama.cpp.
	pair := func(left int32) (uint64, bool) {
		right := next[left]
		if right < 0 {
			return 0, false
		}
		id, ok := m.ids[s[start[left]:start[right]+size[right]]]
		if !ok {
			return 0, false
		}
		return queueKey(scoreKey(m.scores[id]), left), true
	}
	var q queue
	for i := int32(0); i+1 < int32(len(start)); i++ {
		if key, ok := pair(i); ok {
			q = append(q, key)
		}
	}
	q.init()
	for len(q) > 0 {
		key := q.pop()
		left := int32(uint32(key))
		if size[left] == 0 {
			continue
		}
		if cur, ok := pair(left); !ok || cur != key {
			continue // stale: a side has merged since
		}
		right := next[left]
		size[left] += size[right]
		size[right] = 0
		nx := next[right]
		next[left] = nx
		if nx >= 0 {
			prev[nx] = left
		}
		if p := prev[left]; p >= 0 {
			if key, ok := pair(p); ok {
				q.push(key)
			}
		}
		if key, ok := pair(left); ok {
			q.push(key)
		}
	}
	for i := int32(0); i >= 0; i = next[i] {
		sym := s[start[i] : start[i]+size[i]]
		if id, ok := m.ids[sym]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(sym); j++ {
			if id := m.byteTok[sym[j]]; id >= 0 {
				out = append(out, id)
			}
		}
	}
	return out
}
