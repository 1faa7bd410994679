package kvquant

import (
	"fmt"
	"math"
	"sync"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model"
)

// RoPE is a table of rotary position embedding angles for positions 0..Positions()−1, to
// rotate keys stored before RoPE to their positions when they are read. Its rotation is
// the model's (model.Model.Rotate): same frequencies, same float32 cos and sin, same pairs.
// (The fast rotation rounds once per multiply-add, so results may differ from the
// model's in the last bit.) It is immutable and safe for concurrent use.
type RoPE struct {
	headDim, ropeDim int
	neox             bool
	freq             []float64
	positions        int
	// The angles of position p = h·ropeStep + l come from those of h·ropeStep (hiCos,
	// hiSin: one row of ropeDim/2 per h) and of l (loCos, loSin: ropeStep rows), tables
	// small enough to stay in cache however long the context.
	hiCos, hiSin, loCos, loSin []float32

	// The same tables laid out for kernels.KVQScoreKeys (KVQPairAngles rows), built on
	// first use by pairTables.
	pairOnce       sync.Once
	pairHi, pairLo []float32
	// The angles of positions h·kernels.KVQLowPositions laid out for
	// kernels.KVQScoreKeysLo (KVQPairAngles16 rows), by hiTable.
	hiOnce sync.Once
	hi16   []float32
	// The angles of positions 0..kernels.KVQLowPositions−1 laid out for
	// kernels.KVQRotateQueries (KVQTurnBack16 rows), by backTable.
	backOnce sync.Once
	back16   []float32
}

// hiTable returns the coarse angle table of kernels.KVQScoreKeysLo: row h holds the
// angles of position h·kernels.KVQLowPositions, computed as NewRoPE computes its tables.
func (r *RoPE) hiTable() []float32 {
	r.hiOnce.Do(func() {
		const step = kernels.KVQLowPositions
		half := len(r.freq)
		rows := (r.positions + step - 1) / step
		cos, sin := make([]float32, half), make([]float32, half)
		r.hi16 = make([]float32, 0, rows*2*half)
		for h := range rows {
			for i, f := range r.freq {
				s, c := math.Sincos(float64(h*step) * f)
				cos[i], sin[i] = float32(c), float32(s)
			}
			r.hi16 = append(r.hi16, kernels.KVQPairAngles16(cos, sin)...)
		}
	})
	return r.hi16
}

// backTable returns the table kernels.KVQRotateQueries turns queries back by: row l
// holds the angles of position l (rows of the low table), l < kernels.KVQLowPositions.
func (r *RoPE) backTable() []float32 {
	r.backOnce.Do(func() {
		half := len(r.freq)
		for l := range kernels.KVQLowPositions {
			r.back16 = append(r.back16, kernels.KVQTurnBack16(r.loCos[l*half:(l+1)*half], r.loSin[l*half:(l+1)*half])...)
		}
	})
	return r.back16
}

// pairTables returns the angle tables in the layout of kernels.KVQScoreKeys: row h of hi
// and row l of lo compose the angles of position 64h + l.
func (r *RoPE) pairTables() (hi, lo []float32) {
	r.pairOnce.Do(func() {
		half := r.ropeDim / 2
		build := func(cos, sin []float32) []float32 {
			out := make([]float32, 0, 2*len(cos))
			for p := 0; p < len(cos); p += half {
				out = append(out, kernels.KVQPairAngles(cos[p:p+half], sin[p:p+half])...)
			}
			return out
		}
		r.pairHi, r.pairLo = build(r.hiCos, r.hiSin), build(r.loCos, r.loSin)
	})
	return r.pairHi, r.pairLo
}

// ropeStep is the number of positions per row of the coarse angle table.
const ropeStep = 64

// Frequencies returns the angle per position of each RoPE pair of a model with
// configuration cfg, RopeScale·RopeBase^(−2i/RopeDim) divided by factors[i] (the file's
// rope_freqs.weight; nil when the model has none), computed as package model does.
func Frequencies(cfg *model.Config, factors []float32) ([]float64, error) {
	if cfg.RopeDim < 2 || cfg.RopeDim%2 != 0 || cfg.RopeDim > cfg.HeadDim {
		return nil, fmt.Errorf("%w: RoPE dimension %d for heads of %d", ErrInvalid, cfg.RopeDim, cfg.HeadDim)
	}
	if factors != nil && len(factors) != cfg.RopeDim/2 {
		return nil, fmt.Errorf("%w: %d RoPE factors for %d pairs", ErrInvalid, len(factors), cfg.RopeDim/2)
	}
	f := make([]float64, cfg.RopeDim/2)
	for i := range f {
		f[i] = cfg.RopeScale * math.Pow(cfg.RopeBase, -float64(2*i)/float64(cfg.RopeDim))
		if factors != nil {
			if !(factors[i] > 0) {
				return nil, fmt.Errorf("%w: RoPE factor %d is %v", ErrInvalid, i, factors[i])
			}
			f[i] /= float64(factors[i])
		}
	}
	return f, nil
}

// NewRoPE returns the table for heads of headDim values whose first len(freq)·2 values are
// rotated (pairs (2i, 2i+1), or (i, i+len(freq)) when neox) by pos·freq[i], for positions
// below positions. Errors wrap ErrInvalid.
func NewRoPE(headDim int, neox bool, freq []float64, positions int) (*RoPE, error) {
	rd := 2 * len(freq)
	if rd < 2 || rd > headDim || headDim > maxDim {
		return nil, fmt.Errorf("%w: %d RoPE pairs for heads of %d", ErrInvalid, len(freq), headDim)
	}
	if positions < 0 || positions > math.MaxInt32 || positions > (1<<31)/len(freq) {
		return nil, fmt.Errorf("%w: %d RoPE positions", ErrInvalid, positions)
	}
	for i, f := range freq {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: RoPE frequency %d is %v", ErrInvalid, i, f)
		}
	}
	half := len(freq)
	hi := (positions + ropeStep - 1) / ropeStep
	r := &RoPE{
		headDim: headDim, ropeDim: rd, neox: neox, freq: freq, positions: positions,
		hiCos: make([]float32, hi*half), hiSin: make([]float32, hi*half),
		loCos: make([]float32, ropeStep*half), loSin: make([]float32, ropeStep*half),
	}
	table := func(cos, sin []float32, rows, step int) {
		for p := range rows {
			for i, f := range freq {
				sn, cs := math.Sincos(float64(p*step) * f)
				cos[p*half+i], sin[p*half+i] = float32(cs), float32(sn)
			}
		}
	}
	table(r.hiCos, r.hiSin, hi, ropeStep)
	table(r.loCos, r.loSin, ropeStep, 1)
	return r, nil
}

// Positions is the number of positions the table covers.
func (r *RoPE) Positions() int { return r.positions }

// HeadDim is the length of the vectors Rotate rotates.
func (r *RoPE) HeadDim() int { return r.headDim }

// NeoX reports whether pairs are (i, i+RopeDim/2) rather than adjacent.
func (r *RoPE) NeoX() bool { return r.neox }

// Frequencies returns the angle per position of each pair (shared; do not modify).
func (r *RoPE) Frequencies() []float64 { return r.freq }

// parts returns the tables' rows whose angles compose position pos's (KVQAngles).
func (r *RoPE) parts(pos int) (ch, sh, cl, sl []float32) {
	half := r.ropeDim / 2
	h, l := pos/ropeStep*half, pos%ropeStep*half
	return r.hiCos[h : h+half], r.hiSin[h : h+half], r.loCos[l : l+half], r.loSin[l : l+half]
}

// angles sets cos and sin (RopeDim/2 each) to the angles of position pos's pairs.
func (r *RoPE) angles(cos, sin []float32, pos int) {
	half := r.ropeDim / 2
	h, l := pos/ropeStep*half, pos%ropeStep*half
	kernels.KVQAngles(cos, sin, r.hiCos[h:h+half], r.hiSin[h:h+half], r.loCos[l:l+half], r.loSin[l:l+half])
}

// Rotate rotates x, one head's HeadDim values, to position pos (below Positions()).
func (r *RoPE) Rotate(x []float32, pos int) {
	r.rotate(x, make([]float32, r.ropeDim), pos)
}

// rotate is Rotate with scratch of at least RopeDim values for the angles.
func (r *RoPE) rotate(x, buf []float32, pos int) {
	half := r.ropeDim / 2
	cos, sin := buf[:half], buf[half:2*half]
	r.angles(cos, sin, pos)
	kernels.KVQRotate(x, cos, sin, r.neox)
}

// Check returns an error if r does not rotate as m does (m.Rotate), compared on a probe
// vector at a few positions below Positions(): the artifact and the model must agree.
func (r *RoPE) Check(m *model.Model) error {
	cfg := &m.Config
	if cfg.HeadDim != r.headDim || cfg.RopeDim != r.ropeDim || cfg.NeoX != r.neox {
		return fmt.Errorf("%w: RoPE of %d/%d values (neox %v), the model's %d/%d (neox %v)",
			ErrInvalid, r.ropeDim, r.headDim, r.neox, cfg.RopeDim, cfg.HeadDim, cfg.NeoX)
	}
	a := make([]float32, r.headDim)
	b := make([]float32, r.headDim)
	n := r.Positions()
	for _, p := range []int{1, 7, n / 3, n - 1} {
		if p < 0 || p >= n {
			continue
		}
		for i := range a {
			a[i] = float32(i%7) - 2.5
		}
		copy(b, a)
		r.Rotate(a, p)
		m.Rotate(b, p)
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > 1e-5*(1+math.Abs(float64(b[i]))) {
				return fmt.Errorf("%w: RoPE at position %d differs from the model's (element %d: %v, model %v)", ErrInvalid, p, i, a[i], b[i])
			}
		}
	}
	return nil
}
