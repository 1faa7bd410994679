package tokenizer

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// naiveBPE is the textbook form of the merge loop of bpeWork.run: find the adjacent pair
// with the lowest rank (the leftmost among equals), merge it, repeat. Quadratic, for
// checking the queue-based loop.
func naiveBPE(m *bpeModel, word string) []int32 {
	if m.ignoreMerges {
		if id, ok := m.ids[mapBytes(word)]; ok {
			return []int32{id}
		}
	}
	var sym []int32
	for i := 0; i < len(word); i++ {
		sym = append(sym, m.byteSym[word[i]])
	}
	for {
		best, at := int32(-1), -1
		for i := 0; i+1 < len(sym); i++ {
			if r, ok := m.merges[pairKey(sym[i], sym[i+1])]; ok && (at < 0 || r.rank < best) {
				best, at = r.rank, i
			}
		}
		if at < 0 {
			break
		}
		sym[at] = m.merges[pairKey(sym[at], sym[at+1])].result
		sym = slices.Delete(sym, at+1, at+2)
	}
	var out []int32
	for _, s := range sym {
		out = m.appendSymbol(out, s)
	}
	return out
}

// naiveSPM is the textbook form of spmModel.encode, as llama2.c's encode() writes it:
// merge the adjacent pair that forms the highest-scoring token (the leftmost among
// equals) until none forms a token.
func naiveSPM(m *spmModel, text string, prefix bool) []int32 {
	if prefix {
		text = " " + text
	}
	s := strings.ReplaceAll(text, " ", spmSpace)
	var sym []string
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		sym = append(sym, s[i:i+n])
		i += n
	}
	for {
		var best float32
		at := -1
		for i := 0; i+1 < len(sym); i++ {
			if id, ok := m.ids[sym[i]+sym[i+1]]; ok && (at < 0 || m.scores[id] > best) {
				best, at = m.scores[id], i
			}
		}
		if at < 0 {
			break
		}
		sym[at] += sym[at+1]
		sym = slices.Delete(sym, at+1, at+2)
	}
	var out []int32
	for _, piece := range sym {
		if id, ok := m.ids[piece]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(piece); j++ {
			if id := m.byteTok[piece[j]]; id >= 0 {
				out = append(out, id)
			}
		}
	}
	return out
}

// FuzzMergeOrder checks the queue-based merge loops against the naive ones on the
// fuzzing tokenizers, including vocabularies with many equal scores.
func FuzzMergeOrder(f *testing.F) {
	toks := fuzzTokenizers(f)
	// Equal scores everywhere: ties decide every merge.
	flat := spmVocab([]string{"▁", "a", "b", "ab", "ba", "aa", "aba", "bab", "▁a", "▁b", "abab"}, make([]float32, 11))
	toks["spm-flat"] = mustNew(f, flat)
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Add("abababa aab bba")
	f.Fuzz(func(t *testing.T, s string) {
		for name, tok := range toks {
			if tok.spm != nil {
				got := tok.spm.encode(nil, s, true)
				if want := naiveSPM(tok.spm, s, true); !slices.Equal(got, want) {
					t.Errorf("%s %q: %v, naive %v", name, s, got, want)
				}
				continue
			}
			var w bpeWork
			for rest := s; len(rest) > 0; {
				n := tok.bpe.split(rest)
				got := w.run(tok.bpe, nil, rest[:n])
				if want := naiveBPE(tok.bpe, rest[:n]); !slices.Equal(got, want) {
					t.Errorf("%s word %q: %v, naive %v", name, rest[:n], got, want)
				}
				rest = rest[n:]
			}
		}
	})
}

// TestScoreKey checks that scoreKey orders scores from high to low and keeps ties.
func TestScoreKey(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	scores := []float32{float32(math.Inf(1)), 3.5, 1, 1e-30, 0, negZero, -1e-30, -1, -7.25, float32(math.Inf(-1))}
	for i := 1; i < len(scores); i++ {
		a, b := scoreKey(scores[i-1]), scoreKey(scores[i])
		if scores[i-1] == scores[i] && a != b || scores[i-1] > scores[i] && a >= b {
			t.Errorf("scoreKey(%v) = %d, scoreKey(%v) = %d", scores[i-1], a, scores[i], b)
		}
	}
}
