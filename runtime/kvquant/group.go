package kvquant

import (
	"squeeze/runtime/kernels"
	"squeeze/runtime/sparse"
)

// groupDim is the longest row the multi-row kernels take.
const groupDim = 256

// groupKeys reports whether DotsN decodes r's rows once for several vectors: keys with
// per-channel ranges, stored before RoPE with adjacent pairs over the whole row, rows of
// a multiple of 8 values.
func (r *Rows) groupKeys() bool {
	return r.Axis == PerChannel && r.RoPE != nil && !r.RoPE.neox && r.RoPE.ropeDim == r.Dim &&
		r.Dim%8 == 0 && r.Dim <= groupDim
}

// groupValues reports whether AccumulateN decodes r's rows once for several vectors:
// values with per-token ranges, rows of a multiple of 8 values.
func (r *Rows) groupValues() bool {
	return r.Axis == PerToken && r.RoPE == nil && r.Dim%8 == 0
}

// QueriesLen returns the length of the form PrepareQueries gives nq query vectors: the
// vectors turned back by the angles of positions 0 to kernels.KVQLowPositions−1
// (kernels.KVQRotateQueries), for keys that kernels.KVQScoreKeysLo scores here; 0
// otherwise.
func (r *Rows) QueriesLen(nq int) int {
	if r.ranges16 == nil {
		return 0
	}
	return kernels.KVQLowPositions * nq * r.Dim
}

// queriesForm identifies the form PrepareQueries writes: the vectors turned back by one
// RoPE table's angles, for rows of one length.
type queriesForm struct {
	rope *RoPE
	dim  int
}

// QueriesForm returns a value equal for rows whose PrepareQueries write the same form
// (sparse.QueriesFormer): rows of one length rotated by one RoPE table. It is nil where
// QueriesLen is 0.
func (r *Rows) QueriesForm() any {
	if r.QueriesLen(1) == 0 {
		return nil
	}
	return queriesForm{r.RoPE, r.Dim}
}

// PrepareQueries writes the form of the nq vectors q that DotsN reads (QueriesLen), in
// blocks of kernels.KVQMaxVecs vectors.
func (r *Rows) PrepareQueries(dst, q []float32, nq int) {
	d := r.Dim
	for v := 0; v < nq; v += kernels.KVQMaxVecs {
		m := min(kernels.KVQMaxVecs, nq-v)
		kernels.KVQRotateQueries(dst[kernels.KVQLowPositions*v*d:], q[v*d:], m, d, r.RoPE.backTable())
	}
}

// DotsN sets dst[v*dstride+i] = q[v*Dim:(v+1)*Dim] · row(lo+i) for v < nq and i < hi−lo:
// Dots for nq query vectors (a GQA group), each key decoded once for up to
// kernels.KVQMaxVecs of them, then the outliers added as rotated differences (outliers,
// kernels.KVQAddKeyFixes).
// With prep (PrepareQueries' form of q) keys turn by their coarse angles only
// (kernels.KVQScoreKeysLo); without, by their whole angles (kernels.KVQScoreKeys). Each
// vector's scores are those a call for it alone gives.
func (r *Rows) DotsN(dst []float32, dstride int, q, prep []float32, nq, lo, hi int) {
	d := r.Dim
	if !r.groupKeys() {
		for v := range nq {
			r.Dots(dst[v*dstride:v*dstride+hi-lo], q[v*d:(v+1)*d], lo, hi)
		}
		return
	}
	if hi <= lo {
		return
	}
	// The corrections' place first, and their records fetched while the kernel runs:
	// for a short run of rows at a scattered place, each of these reads would otherwise
	// wait for memory after the kernel.
	k0, k1 := r.first(lo), r.first(hi)
	kernels.Prefetch(r.out.keys[k0:k1])
	rb := r.RowBytes()
	for v := 0; v < nq; v += kernels.KVQMaxVecs {
		m := min(kernels.KVQMaxVecs, nq-v)
		if prep != nil {
			kernels.KVQScoreKeysLo(dst[v*dstride:], dstride, prep[kernels.KVQLowPositions*v*d:], m, r.Codes[lo*rb:], hi-lo, r.Bits, &r.lvp, r.ranges16, r.Pos[lo:], r.RoPE.hiTable())
			continue
		}
		ph, pl := r.RoPE.pairTables()
		kernels.KVQScoreKeys(dst[v*dstride:], dstride, q[v*d:], m, r.Codes[lo*rb:], hi-lo, r.Bits, &r.lvp, r.ranges, r.Pos[lo:hi], ph, pl)
	}
	kernels.KVQAddKeyFixes(dst, dstride, hi-lo, q, nq, d, r.out.keys[k0:k1], lo)
}

// AccumulateN adds Σ_i w[v*wstride+i]·row(lo+i) to out[v*ostride:][:Dim] for v < nq and
// i < hi−lo: Accumulate for nq weight vectors, each row's codes decoded once for up to
// kernels.KVQMaxVecs of them (kernels.KVQAccumulateTokens: levels times the rows' Half,
// plus their Mids), then the outliers corrected (their records fetched while the kernel
// runs, as DotsN does). Each vector's sums are those a call for it alone gives.
func (r *Rows) AccumulateN(out []float32, ostride int, w []float32, wstride, nq, lo, hi int) {
	d := r.Dim
	if !r.groupValues() {
		for v := range nq {
			r.Accumulate(out[v*ostride:v*ostride+d], w[v*wstride:v*wstride+hi-lo], lo, hi)
		}
		return
	}
	if hi <= lo {
		return
	}
	k0, k1 := r.first(lo), r.first(hi)
	kernels.Prefetch(r.out.vals[k0:k1])
	rb := r.RowBytes()
	for v0 := 0; v0 < nq; v0 += kernels.KVQMaxVecs {
		m := min(kernels.KVQMaxVecs, nq-v0)
		kernels.KVQAccumulateTokens(out[v0*ostride:], ostride, w[v0*wstride:], wstride, m, r.halves[lo:hi], r.mids[lo:hi], r.Codes[lo*rb:], hi-lo, d, r.Bits, &r.lvp)
	}
	kernels.KVQAddValueFixes(out, ostride, w, wstride, hi-lo, nq, d, r.out.vals[k0:k1], lo)
}

// outlierFixes are a Rows' outliers as corrections to its dense decoding, in row order,
// each in one record (one read from memory for a short run of rows): a key's outlier
// changes a pair of its row, a value's one channel.
type outlierFixes struct {
	keys []kernels.KVQKeyFix
	vals []kernels.KVQValueFix
	n    int // the number of corrections
	// The index of the first correction of row i or later is start[i/fixBlock] +
	// off[i], for i < the number of rows; rows at the start of a block (where a dense
	// session's chunks begin) need only start, a table small enough to stay in cache.
	start []int32
	off   []uint16
}

// fixBlock is the number of rows per entry of outlierFixes.start.
const fixBlock = 32

// first returns the index of the first correction of row lo or later.
func (r *Rows) first(lo int) int {
	o := &r.out
	if lo >= r.n {
		return o.n
	}
	k := int(o.start[lo/fixBlock])
	if lo%fixBlock == 0 {
		return k
	}
	return k + int(o.off[lo])
}

// outliers lists r's outliers as corrections: for keys the difference Δ between an
// outlier and its dense value at channel j, turned with its pair at the row's position,
// (Δ·c, Δ·s) for the pair's first value, (−Δ·s, Δ·c) for its second; for values Δ.
func (r *Rows) outliers() outlierFixes {
	o := outlierFixes{n: r.Outliers()}
	keys := r.RoPE != nil
	if keys {
		o.keys = make([]kernels.KVQKeyFix, 0, o.n)
	} else {
		o.vals = make([]kernels.KVQValueFix, 0, o.n)
	}
	o.off = make([]uint16, r.n)
	rb := r.RowBytes()
	c := r.seek(0)
	for c.row < r.n {
		i := c.row
		j, val, _ := r.next(&c, i)
		l := r.lv[kernels.KVQCode(r.Codes[i*rb:(i+1)*rb], r.Bits, j)]
		o.off[i]++
		if !keys {
			mid, half := kernels.F16ToF32(r.Token[2*i]), kernels.F16ToF32(r.Token[2*i+1])
			o.vals = append(o.vals, kernels.KVQValueFix{Row: int32(i), At: uint16(j), A: val - (mid + half*l)})
			continue
		}
		delta := val - (r.chMid[j] + r.chHalf[j]*l)
		p := j / 2
		ch, sh, cl, sl := r.RoPE.parts(int(r.Pos[i]))
		cs := ch[p]*cl[p] - sh[p]*sl[p]
		sn := sh[p]*cl[p] + ch[p]*sl[p]
		a, b := delta*cs, delta*sn
		if j%2 == 1 {
			a, b = -delta*sn, delta*cs
		}
		o.keys = append(o.keys, kernels.KVQKeyFix{Row: int32(i), Pair: uint16(p), A: a, B: b})
	}
	// off holds each row's count of corrections so far; running sums turn the counts
	// into the corrections before each block (start) and before each row within its
	// block (off).
	o.start = make([]int32, (r.n+fixBlock-1)/fixBlock)
	k := 0
	for b := range o.start {
		o.start[b] = int32(k)
		before := 0
		for i := b * fixBlock; i < min(r.n, (b+1)*fixBlock); i++ {
			count := int(o.off[i])
			o.off[i] = uint16(before)
			before += count
		}
		k += before
	}
	return o
}

// rowDim returns the row length of quantized or f16 rows, or def for others.
func rowDim(p sparse.Rows, def int) int {
	switch v := p.(type) {
	case *Rows:
		return v.Dim
	case *sparse.F16Rows:
		return v.Dim
	}
	return def
}

// QueriesLen is the total of the parts' (sparse.GroupRows), one after another.
func (j *Joined) QueriesLen(nq int) int {
	n := 0
	for _, p := range j.Parts {
		if g, ok := p.(sparse.GroupRows); ok {
			n += g.QueriesLen(nq)
		}
	}
	return n
}

// QueriesForm is the form of the one part that prepares query vectors
// (sparse.QueriesFormer), which is then the whole's form; nil if none or several do.
func (j *Joined) QueriesForm() any {
	var form any
	for _, p := range j.Parts {
		g, ok := p.(sparse.GroupRows)
		if !ok || g.QueriesLen(1) == 0 {
			continue
		}
		f, ok := p.(sparse.QueriesFormer)
		if !ok || form != nil {
			return nil
		}
		if form = f.QueriesForm(); form == nil {
			return nil
		}
	}
	return form
}

// PrepareQueries writes each part's form of q, one after another.
func (j *Joined) PrepareQueries(dst, q []float32, nq int) {
	for _, p := range j.Parts {
		if g, ok := p.(sparse.GroupRows); ok {
			n := g.QueriesLen(nq)
			g.PrepareQueries(dst[:n], q, nq)
			dst = dst[n:]
		}
	}
}

// DotsN is Rows.DotsN part by part (parts without it score vector by vector), each
// with its share of prep.
func (j *Joined) DotsN(dst []float32, dstride int, q, prep []float32, nq, lo, hi int) {
	o := 0 // where part i's prepared queries start in prep
	for i, p := range j.Parts {
		g, group := p.(sparse.GroupRows)
		n := 0
		if group && prep != nil {
			n = g.QueriesLen(nq)
		}
		if a, b := max(lo, j.start[i]), min(hi, j.start[i+1]); a < b {
			plo, phi, off := a-j.start[i], b-j.start[i], a-lo
			if group {
				var pp []float32
				if n > 0 {
					pp = prep[o : o+n]
				}
				g.DotsN(dst[off:], dstride, q, pp, nq, plo, phi)
			} else {
				d := rowDim(p, len(q)/nq)
				for v := range nq {
					p.Dots(dst[v*dstride+off:v*dstride+off+phi-plo], q[v*d:(v+1)*d], plo, phi)
				}
			}
		}
		o += n
	}
}

// AccumulateN is Rows.AccumulateN part by part.
func (j *Joined) AccumulateN(out []float32, ostride int, w []float32, wstride, nq, lo, hi int) {
	j.span(lo, hi, func(p sparse.Rows, plo, phi, off int) {
		if g, ok := p.(sparse.GroupRows); ok {
			g.AccumulateN(out, ostride, w[off:], wstride, nq, plo, phi)
			return
		}
		d := rowDim(p, ostride)
		for v := range nq {
			p.Accumulate(out[v*ostride:v*ostride+d], w[v*wstride+off:v*wstride+off+phi-plo], plo, phi)
		}
	})
}

var (
	_ sparse.GroupRows     = (*Rows)(nil)
	_ sparse.GroupRows     = (*Joined)(nil)
	_ sparse.QueriesFormer = (*Rows)(nil)
	_ sparse.QueriesFormer = (*Joined)(nil)
)

// Prefetch starts loading into the second-level cache what reading rows [lo, hi) reads:
// their codes, positions (keys) or ranges (values), their outlier corrections and where
// those start (kernels.PrefetchL2; the first-level cache is left to the kernels' own
// data, such as the prepared queries). A reader about to visit short runs of rows at
// scattered places (the spans of a squeezed session) calls it a little ahead; it has no
// other effect, and ranges outside the rows are ignored.
func (r *Rows) Prefetch(lo, hi int) {
	if lo < 0 || hi > r.n || lo >= hi {
		return
	}
	rb := r.RowBytes()
	kernels.PrefetchL2(r.Codes[lo*rb : hi*rb])
	if r.Pos != nil {
		kernels.PrefetchL2(r.Pos[lo:hi])
	}
	if r.halves != nil {
		kernels.PrefetchL2(r.halves[lo:hi])
		kernels.PrefetchL2(r.mids[lo:hi])
	}
	if o := &r.out; o.off != nil {
		// Where the corrections of the first row and of the row after the last start,
		// and the corrections of the rows' blocks (the table of blocks is small enough
		// to be in cache).
		kernels.PrefetchL2(o.off[lo : lo+1])
		if hi < r.n {
			kernels.PrefetchL2(o.off[hi : hi+1])
		}
		k0, k1 := int(o.start[lo/fixBlock]), o.n
		if b := (hi + fixBlock - 1) / fixBlock; b < len(o.start) {
			k1 = int(o.start[b])
		}
		if o.keys != nil {
			kernels.PrefetchL2(o.keys[k0:k1])
		} else {
			kernels.PrefetchL2(o.vals[k0:k1])
		}
	}
}

// Prefetch is Rows.Prefetch part by part (f16 parts: F16Rows.Prefetch).
func (j *Joined) Prefetch(lo, hi int) {
	if lo < 0 || hi > j.Len() || lo >= hi {
		return
	}
	j.span(lo, hi, func(p sparse.Rows, plo, phi, _ int) {
		switch v := p.(type) {
		case *Rows:
			v.Prefetch(plo, phi)
		case *sparse.F16Rows:
			v.Prefetch(plo, phi)
		}
	})
}
