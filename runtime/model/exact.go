package model

import "squeeze/runtime/kernels"

// attentionEach is the attention of a pass with Options.Exact: token by token, each
// exactly as a pass of that token alone at its position computes it. The batch's keys
// and values are already stored; token i's call sees the keys of positions up to
// pos+i only, cut into the same parts a one-token pass would use, and attends to the
// prefix (if any) in a call of its own, or in one AttendExact call for the batch if
// the prefix is an ExactPrefix. Only the query and output rows move; the workspace's
// buffers are restored afterwards.
func (c *Cache) attentionEach(p *kernels.Pool, layer, pos, n int, prefix Prefix) {
	ws := &c.ws
	cfg := &c.m.Config
	qDim, heads := cfg.QDim(), cfg.Heads
	q, att, attLSE := ws.q, ws.att, ws.attLSE
	defer func() { ws.q, ws.att, ws.attLSE = q, att, attLSE }()
	batch, _ := prefix.(ExactPrefix)
	for i := range n {
		ws.q, ws.att = q[i*qDim:(i+1)*qDim], att[i*qDim:(i+1)*qDim]
		if prefix != nil {
			ws.attLSE = attLSE[i*heads : (i+1)*heads]
		}
		c.attention(p, layer, pos+i, 1, prefix != nil)
		if prefix != nil && batch == nil {
			prefix.Attend(layer, ws.q, 1, ws.pre[i*qDim:(i+1)*qDim], ws.preLSE[i*heads:(i+1)*heads])
		}
	}
	if batch != nil {
		batch.AttendExact(layer, q[:n*qDim], n, ws.pre[:n*qDim], ws.preLSE[:n*heads])
	}
}

// ExactPrefix is a Prefix that attends a batch of tokens giving each one bitwise the
// result Attend gives it alone. A Forward with Options.Exact calls AttendExact once per
// layer for the whole batch rather than Attend once per token, so that the prefix's
// keys and values can be read once for all the batch's tokens.
type ExactPrefix interface {
	Prefix
	// AttendExact is Attend for n tokens, each computed as Attend computes one token.
	AttendExact(layer int, q []float32, n int, out, lse []float32)
}
