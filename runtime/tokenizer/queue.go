package tokenizer

// queue is a binary min-heap of uint64 keys. The BPE and SentencePiece merge loops pack
// a candidate pair into one key (priority in the high 32 bits, position of the left
// symbol in the low 32), so the least key is the best pair and, among equals, the
// leftmost; small keys keep the heap compact for very long words.
type queue []uint64

// init orders q as a heap in linear time.
func (q queue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *queue) push(x uint64) {
	*q = append(*q, x)
	h := *q
	i := len(h) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent] <= x {
			break
		}
		h[i] = h[parent]
		i = parent
	}
	h[i] = x
}

// pop removes and returns the least key; q must not be empty.
func (q *queue) pop() uint64 {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	*q = h[:last]
	if last > 0 {
		q.down(0)
	}
	return top
}

func (q queue) down(i int) {
	n := len(q)
	x := q[i]
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && q[r] < q[c] {
			c = r
		}
		if x <= q[c] {
			break
		}
		q[i] = q[c]
		i = c
	}
	q[i] = x
}

// queueKey packs a priority and a position into a queue key.
func queueKey(priority uint32, pos int32) uint64 { return uint64(priority)<<32 | uint64(uint32(pos)) }
