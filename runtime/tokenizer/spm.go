package tokenizer

import (
	"fmt"
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

// spmBigram is a candidate merge of the symbols at positions left and right.
type spmBigram struct {
	score       float32
	left, right int32
	size        int32 // bytes of the merged text when queued
}

func lessSPMBigram(x, y spmBigram) bool {
	return x.score > y.score || x.score == y.score && x.left < y.left
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
	var q queue[spmBigram]
	q.reset(lessSPMBigram)
	tryAdd := func(left, right int32) {
		if left < 0 || right < 0 {
			return
		}
		text := s[start[left] : start[right]+size[right]]
		if id, ok := m.ids[text]; ok {
			q.push(spmBigram{score: m.scores[id], left: left, right: right, size: int32(len(text))})
		}
	}
	for i := int32(1); i < int32(len(start)); i++ {
		tryAdd(i-1, i)
	}
	for q.len() > 0 {
		b := q.pop()
		if size[b.left] == 0 || size[b.right] == 0 || size[b.left]+size[b.right] != b.size {
			continue // stale: one side has merged since
		}
		size[b.left] += size[b.right]
		size[b.right] = 0
		nx := next[b.right]
		next[b.left] = nx
		if nx >= 0 {
			prev[nx] = b.left
		}
		tryAdd(prev[b.left], b.left)
		tryAdd(b.left, nx)
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
