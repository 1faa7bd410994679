package kernels

import (
	"fmt"
	"math"
	"unsafe"
)

// Multi-row kernels of quantized KV rows: each decodes a run of rows once for up to
// KVQMaxVecs query vectors, in registers, without a decoded copy. Rows have dim values,
// a multiple of 8, so that a row's codes are whole groups (dim·bits/8 bytes) and rows
// follow each other without padding. The levels must repeat with the period 2^bits
// (KVQPeriodic): the kernels use the low 3 bits of a code (2 and 3 bits) as an index
// without masking it first.

// KVQMaxVecs is the most query vectors one multi-row kernel call serves.
const KVQMaxVecs = 4

// kvqMaxDim is the longest row the multi-row kernels take.
const kvqMaxDim = 256

// KVQPeriodic returns levels (2^bits of them, bits 2 to 4) repeated to fill KVQLevels, the
// form the multi-row kernels read.
func KVQPeriodic(levels []float32) KVQLevels {
	var lv KVQLevels
	for i := range lv {
		lv[i] = levels[i%len(levels)]
	}
	return lv
}

// KVQChannelRanges lays out per-channel ranges (dim halves and mids, dim a multiple of 8)
// for KVQScoreKeys: per group of 8 channels, the 8 halves then the 8 mids.
func KVQChannelRanges(half, mid []float32) []float32 {
	return kvqInterleaveN(half, mid, 8)
}

// KVQPairAngles lays out one row of RoPE angles (cos and sin of dim/2 adjacent pairs,
// dim a multiple of 8) for KVQScoreKeys: per group of 8 values (4 pairs), each pair's
// cosine twice, then its sine negated and as is.
func KVQPairAngles(cos, sin []float32) []float32 {
	c, s := kvqPairs(cos, sin)
	return kvqInterleaveN(c, s, 8)
}

// KVQScoreKeys sets dst[v*dstride+i] = q[v*dim:(v+1)*dim] · key i for v < nq (at most
// KVQMaxVecs) and i < n: keys with one range per channel, stored before RoPE, key i's
// codes at src[i·dim·bits/8:], decoded as KVQDecodeChannel does (ranges laid out by
// KVQChannelRanges, dim = len(ranges)/2) and rotated to position pos[i] as
// KVQDecodeRotate rotates them, with the angles of position p composed from row p/64 of
// hi and row p%64 of lo (rows of 2·dim values laid out by KVQPairAngles). Each key is
// decoded once for all the vectors, and each vector's sums do not depend on the others',
// so a call gives every vector the bits a call for it alone would. Outliers are the
// caller's to add.
func KVQScoreKeys(dst []float32, dstride int, q []float32, nq int, src []byte, n, bits int, levels *KVQLevels, ranges []float32, pos []int32, hi, lo []float32) {
	dim := len(ranges) / 2
	rb := dim * bits / 8
	if n <= 0 || nq <= 0 {
		return
	}
	if nq > KVQMaxVecs || dim%8 != 0 || dim == 0 || dim > kvqMaxDim || bits < 2 || bits > 4 ||
		len(q) < nq*dim || len(dst) < (nq-1)*dstride+n || len(src) < n*rb || len(pos) < n || len(lo) < 64*2*dim {
		panic(fmt.Sprintf("kernels: KVQScoreKeys of %d rows of %d (%d bits) for %d vectors: dst %d (stride %d), q %d, src %d, pos %d, lo %d",
			n, dim, bits, nq, len(dst), dstride, len(q), len(src), len(pos), len(lo)))
	}
	hiRows := len(hi) / (2 * dim)
	for _, p := range pos[:n] {
		if p < 0 || int(p)>>6 >= hiRows {
			panic(fmt.Sprintf("kernels: KVQScoreKeys: position %d outside the angle tables' %d", p, 64*hiRows))
		}
	}
	if !kvqFast {
		kvqScoreKeysRef(dst, dstride, q, nq, src, n, bits, levels, ranges, pos, hi, lo)
		return
	}
	// The queries interleaved per group of 8 values: vector v's group g at 32·g + 8·v.
	var qb [KVQMaxVecs * kvqMaxDim]float32
	for v := range nq {
		for g := 0; g < dim; g += 8 {
			copy(qb[4*g+8*v:4*g+8*v+8], q[v*dim+g:v*dim+g+8])
		}
	}
	// The kernel loads 4 bytes at each group's codes: the last row's last group may read
	// past src, so the last row goes through a padded copy when src ends there.
	m := n
	if len(src) < n*rb+4-bits {
		m = n - 1
	}
	if m > 0 {
		kvqScoreKeysRows(unsafe.SliceData(dst), dstride, &qb[0], nq, unsafe.SliceData(src), m, dim, bits, &levels[0],
			unsafe.SliceData(ranges), unsafe.SliceData(pos), unsafe.SliceData(hi), unsafe.SliceData(lo))
	}
	if m < n {
		var last [kvqMaxDim/2 + 4]byte
		copy(last[:], src[m*rb:n*rb])
		kvqScoreKeysRows(&dst[m], dstride, &qb[0], nq, &last[0], 1, dim, bits, &levels[0],
			unsafe.SliceData(ranges), &pos[m], unsafe.SliceData(hi), unsafe.SliceData(lo))
	}
}

// kvqScoreKeysRef is KVQScoreKeys one value at a time.
func kvqScoreKeysRef(dst []float32, dstride int, q []float32, nq int, src []byte, n, bits int, levels *KVQLevels, ranges []float32, pos []int32, hi, lo []float32) {
	dim := len(ranges) / 2
	rb := dim * bits / 8
	key := make([]float32, dim)
	for i := range n {
		row := src[i*rb : (i+1)*rb]
		h := hi[int(pos[i])>>6*2*dim:]
		l := lo[int(pos[i])&63*2*dim:]
		for j := range dim {
			g, t := j/8*16, j%8
			a := ranges[g+8+t] + ranges[g+t]*levels[kvqCode(row, bits, j)]
			key[j] = a
		}
		for j := 0; j < dim; j += 2 {
			g, t := j/8*16, j%8
			c := h[g+t]*l[g+t] - h[g+8+t]*l[g+8+t]
			s := h[g+8+t+1]*l[g+t] + h[g+t]*l[g+8+t+1]
			a, b := key[j], key[j+1]
			key[j], key[j+1] = a*c-b*s, a*s+b*c
		}
		for v := range nq {
			var sum float32
			for j, k := range key {
				sum += q[v*dim+j] * k
			}
			dst[v*dstride+i] = sum
		}
	}
}

// KVQAccumulateTokens adds Σ_i w[v*wstride+i]·(half[i]·levels[code j of row i] + mid[i])
// to out[v*ostride+j] for v < nq (at most KVQMaxVecs), i < n and j < dim: weighted values
// with one range per row (the caller adds their outliers). Row i's codes are at
// src[i·dim·bits/8:]; dim is a multiple of 8. Each vector's sums do not depend on the
// other vectors.
func KVQAccumulateTokens(out []float32, ostride int, w []float32, wstride, nq int, half, mid []float32, src []byte, n, dim, bits int, levels *KVQLevels) {
	rb := dim * bits / 8
	if n <= 0 || nq <= 0 {
		return
	}
	if nq > KVQMaxVecs || dim%8 != 0 || dim == 0 || bits < 2 || bits > 4 || len(half) < n || len(mid) < n ||
		len(out) < (nq-1)*ostride+dim || len(w) < (nq-1)*wstride+n || len(src) < n*rb {
		panic(fmt.Sprintf("kernels: KVQAccumulateTokens of %d rows of %d (%d bits) for %d vectors: out %d (stride %d), w %d (stride %d), half %d, mid %d, src %d",
			n, dim, bits, nq, len(out), ostride, len(w), wstride, len(half), len(mid), len(src)))
	}
	if !kvqFast {
		kvqAccumRef(out, ostride, w, wstride, nq, half, mid, src, n, dim, bits, levels)
		return
	}
	const block = 128
	if kvq512 && dim%64 == 0 {
		// The weights times Half go to a buffer on the stack, which Go clears: a short
		// run (a cluster of a squeezed session) clears a short one.
		switch {
		case n <= 32:
			var ab [KVQMaxVecs * 32]float32
			kvqAccumulate512(out, ostride, w, wstride, nq, half, mid, src, n, dim, bits, levels, ab[:], 32)
			return
		case n <= 64:
			var ab [KVQMaxVecs * 64]float32
			kvqAccumulate512(out, ostride, w, wstride, nq, half, mid, src, n, dim, bits, levels, ab[:], 64)
			return
		}
		var ab [KVQMaxVecs * block]float32
		kvqAccumulate512(out, ostride, w, wstride, nq, half, mid, src, n, dim, bits, levels, ab[:], block)
		return
	}
	// The AVX2 kernel reads the weights times Half row-major, KVQMaxVecs a row; Σ w·Mid
	// is added after.
	var ab [block * KVQMaxVecs]float32
	for lo := 0; lo < n; lo += block {
		hi := min(n, lo+block)
		for v := range nq {
			for i := lo; i < hi; i++ {
				ab[(i-lo)*KVQMaxVecs+v] = w[v*wstride+i] * half[i]
			}
		}
		m := hi
		if len(src) < hi*rb+4-bits { // the last row's last group through a padded copy
			m = hi - 1
		}
		if m > lo {
			kvqAccumTokenRows(unsafe.SliceData(out), ostride, &ab[0], nq, &src[lo*rb], m-lo, dim, bits, &levels[0])
		}
		if m < hi {
			var last [kvqMaxDim/2 + 8]byte
			if rb <= len(last)-8 {
				copy(last[:], src[m*rb:hi*rb])
				kvqAccumTokenRows(unsafe.SliceData(out), ostride, &ab[(m-lo)*KVQMaxVecs], nq, &last[0], 1, dim, bits, &levels[0])
			} else {
				var zero [1]float32
				kvqAccumRef(out, ostride, w[m:], wstride, nq, half[m:], zero[:], src[m*rb:], 1, dim, bits, levels)
			}
		}
	}
	for v := range nq {
		offset := Dot(w[v*wstride:v*wstride+n], mid[:n])
		o := out[v*ostride : v*ostride+dim]
		for j := range o {
			o[j] += offset
		}
	}
}

// kvqAccumulate512 is KVQAccumulateTokens's AVX-512 path, bs rows at a time (ab holds
// KVQMaxVecs·bs values, bs a multiple of 16): per block of rows, the weights times the
// rows' Half and Σ w·Mid (added to every value by the kernel), then the codes; the last
// row's last group (8 bytes read) through a padded copy when src ends there.
func kvqAccumulate512(out []float32, ostride int, w []float32, wstride, nq int, half, mid []float32, src []byte, n, dim, bits int, levels *KVQLevels, ab []float32, bs int) {
	rb := dim * bits / 8
	var off [KVQMaxVecs]float32
	for lo := 0; lo < n; lo += bs {
		hi := min(n, lo+bs)
		kvqScaleWeights512(&ab[0], bs, &w[lo], wstride, nq, &half[lo], &mid[lo], hi-lo, &off[0])
		m := hi
		if len(src) < hi*rb+8-2*bits {
			m = hi - 1
		}
		if m > lo {
			kvqAccumTokenRows512(unsafe.SliceData(out), ostride, &ab[0], bs, nq, &off[0], &src[lo*rb], m-lo, dim, bits, &levels[0])
			off = [KVQMaxVecs]float32{}
		}
		if m < hi {
			var last [kvqMaxDim/2 + 8]byte
			if rb <= len(last)-8 {
				copy(last[:], src[m*rb:hi*rb])
				kvqAccumTokenRows512(unsafe.SliceData(out), ostride, &ab[m-lo], bs, nq, &off[0], &last[0], 1, dim, bits, &levels[0])
				continue
			}
			// The row's Mid is in off unless the kernel added off already (then 0).
			var zero [1]float32
			kvqAccumRef(out, ostride, w[m:], wstride, nq, half[m:], zero[:], src[m*rb:], 1, dim, bits, levels)
			for v := range nq {
				o := out[v*ostride : v*ostride+dim]
				for j := range o {
					o[j] += off[v]
				}
			}
		}
	}
}

// kvqAccumRef is KVQAccumulateTokens a value at a time.
func kvqAccumRef(out []float32, ostride int, w []float32, wstride, nq int, half, mid []float32, src []byte, n, dim, bits int, levels *KVQLevels) {
	rb := dim * bits / 8
	for v := range nq {
		o := out[v*ostride : v*ostride+dim]
		for i := range n {
			a, b, row := w[v*wstride+i]*half[i], w[v*wstride+i]*mid[i], src[i*rb:(i+1)*rb]
			for j := range o {
				o[j] += a*levels[kvqCode(row, bits, j)] + b
			}
		}
	}
}

// KVQChannelRanges16 lays out per-channel ranges (dim halves and mids, dim a multiple of
// 16) for KVQScoreKeysLo: per group of 16 channels, the 16 halves then the 16 mids.
func KVQChannelRanges16(half, mid []float32) []float32 {
	return kvqInterleaveN(half, mid, 16)
}

// KVQPairAngles16 lays out one row of RoPE angles (cos and sin of dim/2 adjacent pairs,
// dim a multiple of 16) for KVQScoreKeysLo: per group of 16 values (8 pairs), each pair's
// cosine twice, then its sine negated and as is (2·dim values).
func KVQPairAngles16(cos, sin []float32) []float32 {
	c, s := kvqPairs(cos, sin)
	return kvqInterleaveN(c, s, 16)
}

// kvqPairs returns each cosine twice and each sine negated then as is.
func kvqPairs(cos, sin []float32) (c, s []float32) {
	p := len(cos)
	c, s = make([]float32, 2*p), make([]float32, 2*p)
	for i := range p {
		c[2*i], c[2*i+1] = cos[i], cos[i]
		s[2*i], s[2*i+1] = -sin[i], sin[i]
	}
	return c, s
}

// kvqInterleaveN returns a and b in groups of w: a's first w, b's first w, and so on.
func kvqInterleaveN(a, b []float32, w int) []float32 {
	out := make([]float32, 2*len(a))
	for g := 0; g < len(a); g += w {
		copy(out[2*g:2*g+w], a[g:g+w])
		copy(out[2*g+w:2*g+2*w], b[g:g+w])
	}
	return out
}

// KVQLowPositions is the period of the angles KVQScoreKeysLo moves to the queries: it
// turns a key at position p by the angles of position p − p%KVQLowPositions and the
// queries back by those of p%KVQLowPositions (their prepared form stays in the L1 cache).
const KVQLowPositions = 32

// KVQQueriesLen returns the length of the form KVQRotateQueries gives nq query vectors
// of dim values (KVQLowPositions·nq·dim), or 0 when KVQScoreKeysLo does not run here (it needs
// AVX-512 VBMI, dim a multiple of 16 up to 256, and nq at most KVQMaxVecs): callers
// then score with KVQScoreKeys.
func KVQQueriesLen(nq, dim int) int {
	if !kvq512 || dim%16 != 0 || dim == 0 || dim > kvqMaxDim || nq < 1 || nq > KVQMaxVecs {
		return 0
	}
	return KVQLowPositions * nq * dim
}

// KVQTurnBack16 lays out one row of RoPE angles (cos and sin of dim/2 adjacent pairs,
// dim a multiple of 16) for KVQRotateQueries, which turns vectors back by them: per
// group of 16 values (8 pairs), each pair's cosine twice, then its sine as is and
// negated (2·dim values).
func KVQTurnBack16(cos, sin []float32) []float32 {
	neg := make([]float32, len(sin))
	for i, s := range sin {
		neg[i] = -s
	}
	return KVQPairAngles16(cos, neg)
}

// KVQRotateQueries writes nq query vectors q (nq·dim values) to dst (KVQQueriesLen
// values) in the form KVQScoreKeysLo reads: for each position l < KVQLowPositions, the
// vectors turned back by l's angles (row l of back, rows of 2·dim values laid out by
// KVQTurnBack16), each pair (x, y) becoming (x·c + y·s, y·c − x·s), laid out per group
// of 16 values, vector after vector.
func KVQRotateQueries(dst, q []float32, nq, dim int, back []float32) {
	if dim%16 != 0 || dim == 0 || nq < 1 || len(q) < nq*dim || len(dst) < KVQLowPositions*nq*dim || len(back) < KVQLowPositions*2*dim {
		panic(fmt.Sprintf("kernels: KVQRotateQueries of %d vectors of %d: dst %d, q %d, back %d", nq, dim, len(dst), len(q), len(back)))
	}
	if kvq512 {
		kvqTurnQueries512(&dst[0], &q[0], nq, dim, &back[0])
		return
	}
	kvqTurnQueriesRef(dst, q, nq, dim, back)
}

// kvqTurnQueriesRef is KVQRotateQueries a value at a time: y = swapped pair times the
// sine lane, then x·c + y rounded once, as the fast path's multiply-add does.
func kvqTurnQueriesRef(dst, q []float32, nq, dim int, back []float32) {
	groups := dim / 16
	at := 0
	for l := range KVQLowPositions {
		for g := range groups {
			ang := back[(l*groups+g)*32:][:32]
			for v := range nq {
				x := q[v*dim+16*g:][:16]
				for j := range 16 {
					y := x[j^1] * ang[16+j]
					dst[at+j] = float32(math.FMA(float64(x[j]), float64(ang[j]), float64(y)))
				}
				at += 16
			}
		}
	}
}

// KVQScoreKeysLo is KVQScoreKeys with each position's angles split: key i is rotated by
// row pos[i]/KVQLowPositions of hi only (the angles of position pos[i] − l, rows of 2·dim
// values laid out by KVQPairAngles16), and dotted with the vectors turned back by the
// angles of position l = pos[i]%KVQLowPositions (prep, from KVQRotateQueries), since
// q·R(θh+θl)k = R(−θl)q·R(θh)k. The ranges are laid out by
// KVQChannelRanges16 (dim = len(ranges)/2). Each vector's scores do not depend on the
// others'. It panics if KVQQueriesLen(nq, dim) is 0, or if a position lies outside
// the table. Where src and pos run on past row n−1, the rows after it may be read (up
// to 3 of them: their positions must lie inside the table too) but are not scored.
func KVQScoreKeysLo(dst []float32, dstride int, prep []float32, nq int, src []byte, n, bits int, levels *KVQLevels, ranges []float32, pos []int32, hi []float32) {
	dim := len(ranges) / 2
	rb := dim * bits / 8
	if n <= 0 {
		return
	}
	if KVQQueriesLen(nq, dim) == 0 || bits < 2 || bits > 4 || len(prep) < KVQQueriesLen(nq, dim) ||
		len(dst) < (nq-1)*dstride+n || len(src) < n*rb || len(pos) < n {
		panic(fmt.Sprintf("kernels: KVQScoreKeysLo of %d rows of %d (%d bits) for %d vectors: dst %d (stride %d), prep %d, src %d, pos %d",
			n, dim, bits, nq, len(dst), dstride, len(prep), len(src), len(pos)))
	}
	hiRows := len(hi) / (2 * dim)
	if dim == 64 {
		kvqScoreKeysLo64(dst, dstride, prep, nq, src, n, bits, levels, ranges, pos, hi, hiRows)
		return
	}
	for _, p := range pos[:n] {
		checkLowPosition(p, hiRows)
	}
	m := n
	if len(src) < n*rb+8-2*bits { // the last row's last group through a padded copy
		m = n - 1
	}
	if m > 0 {
		kvqScoreKeysLo512(unsafe.SliceData(dst), dstride, unsafe.SliceData(prep), nq, unsafe.SliceData(src), m, dim, bits, &levels[0],
			unsafe.SliceData(ranges), unsafe.SliceData(pos), unsafe.SliceData(hi))
	}
	if m < n {
		var last [kvqMaxDim/2 + 8]byte
		copy(last[:], src[m*rb:n*rb])
		kvqScoreKeysLo512(&dst[m], dstride, unsafe.SliceData(prep), nq, &last[0], 1, dim, bits, &levels[0],
			unsafe.SliceData(ranges), &pos[m], unsafe.SliceData(hi))
	}
}

// checkLowPosition panics if position p lies outside an angle table of hiRows rows of
// KVQLowPositions positions.
func checkLowPosition(p int32, hiRows int) {
	if p < 0 || int(p)/KVQLowPositions >= hiRows {
		panic(fmt.Sprintf("kernels: KVQScoreKeysLo: position %d outside the angle table's %d", p, KVQLowPositions*hiRows))
	}
}

// kvqScoreKeysLo64 is KVQScoreKeysLo for rows of 64 values, 4 at a time
// (kvqScoreKeys64x4, which checks the positions). A last block of fewer than 4 rows
// reads the codes and positions of the rows after them where src and pos hold them;
// rows whose codes the kernel would read past src's end (or past pos's) go through
// padded blocks on the stack, the padding repeating the last row.
func kvqScoreKeysLo64(dst []float32, dstride int, prep []float32, nq int, src []byte, n, bits int, levels *KVQLevels, ranges []float32, pos []int32, hi []float32, hiRows int) {
	const dim = 64
	rb := dim * bits / 8
	// m: the rows the kernel scores in place, whole blocks whose reads stay inside src
	// and pos.
	m := n
	if blocks := (n + 3) / 4; len(src) < 4*blocks*rb+8-2*bits || len(pos) < 4*blocks {
		m = 4 * min(n/4, (len(src)-8+2*bits)/(4*rb))
	}
	if m > 0 && !kvqScoreKeys64x4(unsafe.SliceData(dst), dstride, unsafe.SliceData(prep), nq, unsafe.SliceData(src), m, bits, &levels[0],
		unsafe.SliceData(ranges), unsafe.SliceData(pos), unsafe.SliceData(hi), hiRows) {
		// The kernel stopped at a block: one of the positions it read (up to 3 past
		// row m−1) is outside the table.
		for _, p := range pos[:min(len(pos), 4*((m+3)/4))] {
			checkLowPosition(p, hiRows)
		}
		panic("kernels: KVQScoreKeysLo: the kernel stopped at a position inside the angle table")
	}
	var codes [4*dim/2 + 8]byte
	var at [4]int32
	var out [4 * KVQMaxVecs]float32
	for done := m; done < n; done += 4 {
		rest := min(4, n-done)
		for r := range 4 {
			i := done + min(r, rest-1)
			copy(codes[r*rb:(r+1)*rb], src[i*rb:(i+1)*rb])
			at[r] = pos[i]
		}
		if !kvqScoreKeys64x4(&out[0], 4, unsafe.SliceData(prep), nq, &codes[0], 4, bits, &levels[0],
			unsafe.SliceData(ranges), &at[0], unsafe.SliceData(hi), hiRows) {
			for _, p := range at {
				checkLowPosition(p, hiRows)
			}
			panic("kernels: KVQScoreKeysLo: the kernel stopped at a position inside the angle table")
		}
		for v := range nq {
			copy(dst[v*dstride+done:v*dstride+done+rest], out[4*v:4*v+rest])
		}
	}
}
