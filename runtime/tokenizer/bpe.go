package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// byteRune maps each byte to the printable rune GPT-2's byte-level BPE writes for it
// (bytes_to_unicode in OpenAI's encoder.py): the printable Latin-1 bytes '!'..'~',
// '¡'..'¬' and '®'..'ÿ' stand for themselves, the other 68 bytes in increasing order
// become U+0100, U+0101, ...; so a space is 'Ġ' (U+0120) and a newline 'Ċ' (U+010A).
var byteRune [256]rune

// runeByte inverts byteRune: runeByte[r] is the byte for rune r < 0x180, -1 elsewhere.
var runeByte [0x180]int16

func init() {
	for i := range runeByte {
		runeByte[i] = -1
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		if '!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF {
			byteRune[b] = rune(b)
		} else {
			byteRune[b] = next
			next++
		}
		runeByte[byteRune[b]] = int16(b)
	}
}

// mapBytes returns s in GPT-2's byte-to-unicode form.
func mapBytes(s string) string {
	var sb strings.Builder
	sb.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		sb.WriteRune(byteRune[s[i]])
	}
	return sb.String()
}

// unmapBytes turns a token text in byte-to-unicode form back into bytes. Runes outside
// the table (as in an added token stored verbatim) are kept as they are.
func unmapBytes(s string) string {
	var b []byte
	for _, r := range s {
		if r < rune(len(runeByte)) && runeByte[r] >= 0 {
			b = append(b, byte(runeByte[r]))
		} else {
			b = utf8.AppendRune(b, r)
		}
	}
	return string(b)
}

// cacheLimit bounds the number of words the BPE cache keeps; when full it starts over.
const cacheLimit = 1 << 16

// cacheMaxWord is the longest word (in bytes) the BPE cache keeps.
const cacheMaxWord = 64

// bpeModel is byte-level BPE as llama.cpp's llm_tokenizer_bpe_session runs it: each word
// starts as one symbol per byte, and the adjacent pair with the lowest merge rank is
// merged (leftmost first among equal ranks) until no adjacent pair has a merge.
//
// Symbols are numbered: ids below the vocabulary size are tokens; higher ids are texts
// that merges mention but the vocabulary lacks, which would be emitted byte by byte.
type bpeModel struct {
	split        splitFunc
	ids          map[string]int32
	nTokens      int32
	byteSym      [256]int32
	merges       map[uint64]mergeRule
	virtual      []string // raw bytes of symbols nTokens, nTokens+1, ...
	ignoreMerges bool     // Llama 3: a word that is a token is not merged
	unk          int32

	mu    sync.RWMutex
	cache map[string][]int32
}

// mergeRule is the result of merging a pair of symbols.
type mergeRule struct {
	rank   int32
	result int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// newBPE builds the byte-level BPE model of t from its merges ("a b", best first).
func newBPE(t *Tokenizer, merges []string, split splitFunc, ignoreMerges bool) (*bpeModel, error) {
	if len(merges) == 0 {
		return nil, fmt.Errorf("%w: a gpt2 tokenizer needs merges", ErrInvalidVocab)
	}
	m := &bpeModel{
		split:        split,
		ids:          t.ids,
		nTokens:      int32(len(t.tokens)),
		merges:       make(map[uint64]mergeRule, len(merges)),
		ignoreMerges: ignoreMerges,
		unk:          t.unk,
		cache:        make(map[string][]int32),
	}
	virtualIDs := make(map[string]int32)
	symbol := func(mapped string) int32 {
		if id, ok := m.ids[mapped]; ok {
			return id
		}
		if id, ok := virtualIDs[mapped]; ok {
			return id
		}
		id := m.nTokens + int32(len(m.virtual))
		virtualIDs[mapped] = id
		m.virtual = append(m.virtual, unmapBytes(mapped))
		return id
	}
	for b := range 256 {
		m.byteSym[b] = symbol(string(byteRune[b]))
	}
	for rank, merge := range merges {
		// As llama.cpp does, split at the first space after the first byte.
		i := strings.IndexByte(merge[min(1, len(merge)):], ' ') + 1
		if i <= 0 || i == len(merge)-1 {
			return nil, fmt.Errorf("%w: merge %d %q is not two parts joined by a space", ErrInvalidVocab, rank, merge)
		}
		a, b := merge[:i], merge[i+1:]
		key := pairKey(symbol(a), symbol(b))
		if _, dup := m.merges[key]; dup {
			continue // the first (best) rank of a pair wins
		}
		m.merges[key] = mergeRule{rank: int32(rank), result: symbol(a + b)}
	}
	return m, nil
}

// encode appends the ids of text (plain text, no special tokens) to out.
func (m *bpeModel) encode(out []int32, text string) []int32 {
	var w bpeWork
	for len(text) > 0 {
		n := m.split(text)
		out = m.encodeWord(out, text[:n], &w)
		text = text[n:]
	}
	return out
}

// encodeWord appends the ids of one pre-tokenized word, through the cache.
func (m *bpeModel) encodeWord(out []int32, word string, w *bpeWork) []int32 {
	if len(word) == 1 {
		return m.appendSymbol(out, m.byteSym[word[0]])
	}
	if len(word) > cacheMaxWord {
		return w.run(m, out, word)
	}
	m.mu.RLock()
	ids, ok := m.cache[word]
	m.mu.RUnlock()
	if ok {
		return append(out, ids...)
	}
	n := len(out)
	out = w.run(m, out, word)
	ids = append([]int32(nil), out[n:]...)
	m.mu.Lock()
	if len(m.cache) >= cacheLimit {
		clear(m.cache)
	}
	m.cache[word] = ids
	m.mu.Unlock()
	return out
}

// appendSymbol appends the tokens of symbol s: s itself if it is a token, else its bytes
// (the unknown token for bytes that are no token, or nothing if there is none).
func (m *bpeModel) appendSymbol(out []int32, s int32) []int32 {
	if s < m.nTokens {
		return append(out, s)
	}
	for _, b := range []byte(m.virtual[s-m.nTokens]) {
		switch bs := m.byteSym[b]; {
		case bs < m.nTokens:
			out = append(out, bs)
		case m.unk >= 0:
			out = append(out, m.unk)
		}
	}
	return out
}

// bpeWork holds the scratch space of one encoding call.
type bpeWork struct {
	sym        []int32 // symbol at each position; merged-away positions are unlinked
	prev, next []int32
	alive      []bool
	queue      queue // candidate merges: queueKey(rank, left position)
}

// run merges word and appends its tokens to out.
//
// A queued candidate is checked when it comes out of the queue: it is current if its
// left symbol is still alive and, with its right neighbour, still forms a pair of the
// queued rank. Ranks identify pairs, and every adjacent pair with a merge has an entry
// in the queue, so the merge order is exactly "lowest rank, then leftmost".
func (w *bpeWork) run(m *bpeModel, out []int32, word string) []int32 {
	if m.ignoreMerges {
		if id, ok := m.ids[mapBytes(word)]; ok {
			return append(out, id)
		}
	}
	n := len(word)
	w.sym = w.sym[:0]
	w.prev = w.prev[:0]
	w.next = w.next[:0]
	w.alive = w.alive[:0]
	for i := 0; i < n; i++ {
		w.sym = append(w.sym, m.byteSym[word[i]])
		w.prev = append(w.prev, int32(i-1))
		w.next = append(w.next, int32(i+1))
		w.alive = append(w.alive, true)
	}
	w.next[n-1] = -1
	w.queue = w.queue[:0]
	for i := 1; i < n; i++ {
		if r, ok := m.merges[pairKey(w.sym[i-1], w.sym[i])]; ok {
			w.queue = append(w.queue, queueKey(uint32(r.rank), int32(i-1)))
		}
	}
	w.queue.init()
	for len(w.queue) > 0 {
		key := w.queue.pop()
		left := int32(uint32(key))
		right := w.next[left]
		if !w.alive[left] || right < 0 {
			continue
		}
		r, ok := m.merges[pairKey(w.sym[left], w.sym[right])]
		if !ok || uint32(r.rank) != uint32(key>>32) {
			continue // stale: a side has merged since
		}
		w.sym[left] = r.result
		w.alive[right] = false
		nx := w.next[right]
		w.next[left] = nx
		if nx >= 0 {
			w.prev[nx] = left
		}
		w.push(m, w.prev[left], left)
		w.push(m, left, nx)
	}
	for i := int32(0); i >= 0; i = w.next[i] {
		out = m.appendSymbol(out, w.sym[i])
	}
	return out
}

// push queues the pair at positions left and right if a merge exists for it.
func (w *bpeWork) push(m *bpeModel, left, right int32) {
	if left < 0 || right < 0 {
		return
	}
	if r, ok := m.merges[pairKey(w.sym[left], w.sym[right])]; ok {
		w.queue.push(queueKey(uint32(r.rank), left))
	}
}
