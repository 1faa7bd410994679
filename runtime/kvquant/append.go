package kvquant

import (
	"errors"
	"fmt"
	"unsafe"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
	"squeeze/runtime/sparse"
)

// Appender quantizes a generation's own tokens on append, as KVQuant does for the tokens
// a model adds after its prompt: it moves the oldest tokens of the generation's
// model.Cache (the query's and the answer's) to the tail of the squeezed-attention
// session (sparse.Session.AppendTail) that attends to the fixed context, and drops them
// from the cache (model.Cache.DropFront), so that every token keeps its position. Keys
// stay as the cache holds them, after RoPE, in half precision; values are quantized per
// token with the layer's value datatype of the artifact (format.KVLayer.Value), the
// range of each row from the row itself (Ranges, per token: computed online, nothing
// calibrated), and dense-and-sparse outliers.
//
// Outliers are chosen over each moved block, one KV head's rows of the tokens one Spill
// call moves, by the rule precompute applies over the whole context (Ranges along
// PerToken): the round(frac/2·rows·HeadDim) elements of largest and as many of smallest
// z-score within their row. Applied to one row of 64 values, that rule would keep
// round(0.005·64) = 0 outliers at the default 1%; over a block of 256 rows it keeps 82 at
// each end, as the context's rows have them. Each block is quantized once (Quantize) and
// read through Rows' kernels, one segment of the session's tail per block.
//
// An Appender serves one session and one generation's cache at a time, from one
// goroutine, between forward passes (decode.Options.Spill calls it).
type Appender struct {
	// Pool, if set, quantizes a move's KV heads in parallel (the pool of the generation's
	// forward passes, idle during a move); nil quantizes them one after another.
	Pool *kernels.Pool

	s        *sparse.Session
	cfg      model.Config
	types    []Datatype // per layer; nil: values stay f16
	outliers float64

	// The blocks moved, per layer and KV head: keys (*sparse.F16Rows), and values
	// (*Rows, or *sparse.F16Rows without datatypes).
	keys, values [][][]sparse.Rows
	n            int
	buf          []float32
}

// NewAppender returns an Appender that moves tokens of m's caches to s's tail, quantizing
// layer l's values with types[l] and the outlier fraction outliers (DefaultOutliers is
// KVQuant's; [0, 0.5)). types nil keeps the moved values in half precision, as the cache
// holds them: the tail then attends as the cache did, up to float rounding, and saves no
// memory (a reference for tests and measurements). The session's tail must be empty.
// Errors wrap ErrInvalid.
func NewAppender(s *sparse.Session, m *model.Model, types []Datatype, outliers float64) (*Appender, error) {
	if s == nil || m == nil {
		return nil, fmt.Errorf("%w: an appender needs a session and a model", ErrInvalid)
	}
	cfg := m.Config
	if types != nil && len(types) != cfg.Layers {
		return nil, fmt.Errorf("%w: %d value datatypes for %d layers", ErrInvalid, len(types), cfg.Layers)
	}
	for l, t := range types {
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", l, err)
		}
	}
	if !(outliers >= 0 && outliers < 0.5) {
		return nil, fmt.Errorf("%w: outlier fraction %v, want [0, 0.5)", ErrInvalid, outliers)
	}
	if s.Tail() != 0 {
		return nil, fmt.Errorf("%w: the session already has a tail of %d rows", ErrInvalid, s.Tail())
	}
	a := &Appender{s: s, cfg: cfg, types: types, outliers: outliers}
	a.keys = make([][][]sparse.Rows, cfg.Layers)
	a.values = make([][][]sparse.Rows, cfg.Layers)
	for l := range cfg.Layers {
		a.keys[l] = make([][]sparse.Rows, cfg.KVHeads)
		a.values[l] = make([][]sparse.Rows, cfg.KVHeads)
	}
	return a, nil
}

// Quantized reports whether the Appender quantizes values (NewAppender got datatypes).
func (a *Appender) Quantized() bool { return a.types != nil }

// Spill moves the first n positions of c to the session's tail as one block
// (sparse.Session.AppendTail): their keys (after RoPE, in half precision) and their
// values, quantized per KV head (see Appender); then c drops them
// (model.Cache.DropFront), and the session's Len() has grown by n, so c's other tokens
// keep their positions. The caller makes sure no Cache.Truncate reaches the moved
// positions. The ranking of the values for their outliers reuses its scratch from move to
// move (Ranges), so a move leaves little garbage. On error nothing has changed.
func (a *Appender) Spill(c *model.Cache, n int) error {
	if c == nil || c.Model() == nil || c.Model().Config.Layers != a.cfg.Layers ||
		c.Model().Config.KVHeads != a.cfg.KVHeads || c.Model().Config.HeadDim != a.cfg.HeadDim {
		return fmt.Errorf("%w: spill from a cache of another model", ErrInvalid)
	}
	if n < 0 || n > c.Len() {
		return fmt.Errorf("%w: spill %d positions of a cache of %d", ErrInvalid, n, c.Len())
	}
	if n == 0 {
		return nil
	}
	hd, kvh := a.cfg.HeadDim, a.cfg.KVHeads
	units := a.cfg.Layers * kvh
	if len(a.buf) < units*n*hd {
		a.buf = make([]float32, units*n*hd)
	}
	keys := make([][]sparse.Rows, a.cfg.Layers)
	values := make([][]sparse.Rows, a.cfg.Layers)
	for l := range a.cfg.Layers {
		keys[l] = make([]sparse.Rows, kvh)
		values[l] = make([]sparse.Rows, kvh)
	}
	errs := make([]error, units)
	move := func(lo, hi int) {
		for u := lo; u < hi; u++ {
			l, h := u/kvh, u%kvh
			errs[u] = a.moveHead(c, l, h, n, a.buf[u*n*hd:(u+1)*n*hd], &keys[l][h], &values[l][h])
		}
	}
	if a.Pool != nil {
		a.Pool.For(units, 1, move)
	} else {
		move(0, units)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := a.s.AppendTail(keys, values); err != nil {
		return err
	}
	if err := c.DropFront(n); err != nil {
		return err // not reached: n was checked
	}
	for l := range keys {
		for h := range keys[l] {
			a.keys[l][h] = append(a.keys[l][h], keys[l][h])
			a.values[l][h] = append(a.values[l][h], values[l][h])
		}
	}
	a.n += n
	return nil
}

// moveHead reads the first n positions of layer l's KV head h from c (buf: scratch of
// n rows) and sets k and v to the rows the tail gets.
func (a *Appender) moveHead(c *model.Cache, l, h, n int, buf []float32, k, v *sparse.Rows) error {
	hd := a.cfg.HeadDim
	if _, err := c.Keys(l, h, 0, n, buf); err != nil {
		return err
	}
	*k = sparse.NewF16Rows(hd, buf)
	if _, err := c.Values(l, h, 0, n, buf); err != nil {
		return err
	}
	if a.types == nil {
		*v = sparse.NewF16Rows(hd, buf)
		return nil
	}
	r, err := Quantize(buf, hd, Params{Type: a.types[l], Axis: PerToken, Outliers: a.outliers})
	if err != nil {
		return fmt.Errorf("quantize layer %d head %d: %w", l, h, err)
	}
	*v = r
	return nil
}

// Tokens returns the number of tokens moved to the tail.
func (a *Appender) Tokens() int { return a.n }

// Bytes returns the memory the tail's rows take: 2 bytes a key element, and for values
// the same in half precision, or the quantized rows' codes, ranges and outliers with
// what reading them keeps beside (memoryBytes).
func (a *Appender) Bytes() int {
	total := 0
	for l := range a.keys {
		for h := range a.keys[l] {
			for i, k := range a.keys[l][h] {
				total += 2 * len(k.(*sparse.F16Rows).Data)
				switch v := a.values[l][h][i].(type) {
				case *sparse.F16Rows:
					total += 2 * len(v.Data)
				case *Rows:
					total += v.memoryBytes()
				}
			}
		}
	}
	return total
}

// F16Bytes returns the memory the tail's tokens take in a half-precision cache: 2 bytes
// for each element of their keys and values.
func (a *Appender) F16Bytes() int {
	return a.n * a.cfg.Layers * a.cfg.KVHeads * a.cfg.HeadDim * 2 * 2
}

// memoryBytes is the memory r takes once Init has run: the fields of its stored form as
// Rows holds them (codes, half-float ranges, outlier offsets, indices and values) and
// what Init prepares from them for reading (per-token ranges as floats, the outliers
// as corrections and where each row's start). The datatype's levels are shared.
func (r *Rows) memoryBytes() int {
	n := len(r.Codes) + 2*len(r.Token) + 4*len(r.OutStart) + 2*len(r.OutIndex) + 2*len(r.OutValue)
	n += 4*len(r.Pos) + 4*(len(r.lut)+len(r.chHalf)+len(r.chMid)+len(r.ranges)+len(r.ranges16)+len(r.mids)+len(r.halves))
	n += len(r.out.keys)*int(unsafe.Sizeof(kernels.KVQKeyFix{})) + len(r.out.vals)*int(unsafe.Sizeof(kernels.KVQValueFix{}))
	n += 4*len(r.out.start) + 2*len(r.out.off)
	return n
}
