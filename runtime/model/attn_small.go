package model

import "squeeze/runtime/kernels"

// attnRow is one token of a pass whose attention to the cache rowAttention computes: its
// row in the workspace's query and output buffers, and the layer and position it attends
// at (the keys of positions 0..pos of that layer).
type attnRow struct {
	row, layer, pos int
}

// rowAttention is the scratch of Cache.attentionRows, kept with the cache so that a pass
// allocates nothing.
type rowAttention struct {
	list  []attnRow // attendRows' rows
	rows  []attnRow
	units []rowUnit
	part  []float32 // split rows: each part's output, group x HeadDim per unit
	lse   []float32 // split rows: each part's log-sum-exps, group per unit
	fn    func(lo, hi int)
	// The current call's arguments.
	wantLSE bool
}

// rowUnit is one share of an attentionRows call: KV head head of row row, part part of
// the split parts of its keys.
type rowUnit struct {
	row, head, part, split int
}

// attentionRows computes the attention to the cache of the given rows of ws.q into
// ws.att, each row exactly as a one-token pass at its layer and position computes it
// (Cache.attention with n = 1: the same units of a KV head, the keys cut into the same
// parts, merged alike), but with every row's units handed to the pool at once, where
// Options.Exact otherwise makes one call per token (and ForwardLayers one per stage).
// The rows' keys and values must be stored. With wantLSE, ws.attLSE receives each row's
// log-sum-exps (Heads per row, at its row).
func (c *Cache) attentionRows(p *kernels.Pool, rows []attnRow, wantLSE bool) {
	ws := &c.ws
	ra := &c.rows
	cfg := &c.m.Config
	group := cfg.Heads / cfg.KVHeads
	threads := len(ws.workers)
	ra.units = ra.units[:0]
	parts := 0
	for r := range rows {
		// Cache.attention's split for one token: one unit per KV head, cut further when
		// there are fewer units than threads.
		split := 1
		if cfg.KVHeads < threads {
			split = min((threads+cfg.KVHeads-1)/cfg.KVHeads, (rows[r].pos+1+minSplitSpan-1)/minSplitSpan)
		}
		for g := range cfg.KVHeads {
			for part := range split {
				ra.units = append(ra.units, rowUnit{row: r, head: g, part: part, split: split})
			}
		}
		if split > 1 {
			parts += cfg.KVHeads * split
		}
	}
	if need := len(ra.units) * group; parts > 0 && len(ra.lse) < need {
		ra.lse = make([]float32, need)
		ra.part = make([]float32, need*cfg.HeadDim)
	}
	ra.rows, ra.wantLSE = rows, wantLSE
	if ra.fn == nil {
		ra.fn = func(lo, hi int) {
			for w := lo; w < hi; w++ {
				for u := w; u < len(c.rows.units); u += len(c.ws.workers) {
					c.attendRowUnit(w, u)
				}
			}
		}
	}
	p.For(threads, 1, ra.fn)
	if parts > 0 {
		c.mergeRowParts()
	}
	ra.rows = nil
}

// attendRowUnit runs unit u of the current attentionRows call on worker w, with
// attendWorker's arithmetic for a one-token call: scores of the row's group of query
// heads against keys [lo, hi) of its part, their softmax, and the values' weighted sum,
// written to ws.att (one part) or to the part buffers.
func (c *Cache) attendRowUnit(w, u int) {
	ws := &c.ws
	ra := &c.rows
	cfg := &c.m.Config
	wk := ws.workers[w]
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	un := ra.units[u]
	r := ra.rows[un.row]
	g := un.head
	span := r.pos + 1
	chunk := (span + un.split - 1) / un.split
	lo, hi := min(span, un.part*chunk), min(span, (un.part+1)*chunk)
	at := r.row*qDim + g*group*hd
	copy(wk.q[:group*hd], ws.q[at:at+group*hd])
	out, lse := wk.out[:group*hd], wk.lse[:group]
	if un.split > 1 {
		out = ra.part[u*group*hd : (u+1)*group*hd]
		lse = ra.lse[u*group : (u+1)*group]
	}
	c.attendKeys(wk, r.layer, g, r.pos, lo, hi, group, out, lse)
	if un.split == 1 && ra.wantLSE {
		copy(ws.attLSE[r.row*cfg.Heads+g*group:r.row*cfg.Heads+(g+1)*group], lse)
	}
	if un.split == 1 {
		copy(ws.att[at:at+group*hd], out)
	}
}

// mergeRowParts combines the parts of the split rows of the current attentionRows call
// as mergeParts does for a one-token call: each part's output weighted by its share of
// the softmax normalizer.
func (c *Cache) mergeRowParts() {
	ws := &c.ws
	ra := &c.rows
	cfg := &c.m.Config
	hd, qDim := cfg.HeadDim, cfg.QDim()
	group := cfg.Heads / cfg.KVHeads
	for first := 0; first < len(ra.units); first += ra.units[first].split {
		un := ra.units[first]
		if un.split == 1 {
			continue
		}
		r := ra.rows[un.row]
		for v := range group {
			h := un.head*group + v
			dst := ws.att[r.row*qDim+h*hd : r.row*qDim+(h+1)*hd]
			lse := mergeSplit(dst, ra.part, ra.lse, first*group+v, group, un.split)
			if ra.wantLSE {
				ws.attLSE[r.row*cfg.Heads+h] = lse
			}
		}
	}
}

// allSingle reports whether every span has one row (ForwardLayers' stages of one token
// each), whose attention attentionRows computes as Cache.attention would.
func allSingle(spans []span) bool {
	for _, s := range spans {
		if s.hi-s.lo != 1 {
			return false
		}
	}
	return true
}

// attendRows is block's attention when every row attends as a one-token pass would
// (Options.Exact, or spans of one row each): it stores every span's keys and values,
// computes all rows' attention to the cache in one attentionRows call, then each span's
// attention to the prefix (in one ExactPrefix.AttendExact call per span where the prefix
// offers it) and the merge, as a one-token pass does for its token. The workspace's query, output and log-sum-exp buffers are
// left shifted to the last span: block restores them.
func (c *Cache) attendRows(p *kernels.Pool, spans []span, prefix Prefix, exact bool) {
	ws := &c.ws
	cfg := &c.m.Config
	qDim, kvDim, heads, hd := cfg.QDim(), cfg.KVDim(), cfg.Heads, cfg.HeadDim
	rows := c.rows.list[:0]
	for _, s := range spans {
		ns := s.hi - s.lo
		c.store(s.layer, s.pos, ns, ws.k[s.lo*kvDim:], ws.v[s.lo*kvDim:])
		for i := range ns {
			rows = append(rows, attnRow{row: s.lo + i, layer: s.layer, pos: s.pos + i})
		}
	}
	c.rows.list = rows
	c.attentionRows(p, rows, prefix != nil)
	if prefix == nil {
		return
	}
	batch, _ := prefix.(ExactPrefix)
	q0, att0, lse0 := ws.q, ws.att, ws.attLSE
	for _, s := range spans {
		ns := s.hi - s.lo
		q := q0[s.lo*qDim : s.hi*qDim]
		ws.att, ws.attLSE = att0[s.lo*qDim:s.hi*qDim], lse0[s.lo*heads:s.hi*heads]
		switch {
		case ns == 1:
			prefix.Attend(s.layer, q, 1, ws.pre[:qDim], ws.preLSE[:heads])
		case exact && batch != nil:
			batch.AttendExact(s.layer, q, ns, ws.pre[:ns*qDim], ws.preLSE[:ns*heads])
		default:
			for i := range ns {
				prefix.Attend(s.layer, q[i*qDim:(i+1)*qDim], 1, ws.pre[i*qDim:(i+1)*qDim], ws.preLSE[i*heads:(i+1)*heads])
			}
		}
		ws.mergePrefix(ns, heads, hd)
	}
}
