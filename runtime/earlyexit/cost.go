package earlyexit

import (
	"math"
	"time"
)

// stepCosts fits a Pipeline step's time as a + b·rows (the read of the blocks' weights
// and the LM head, and the arithmetic of each row) by least squares over the recent
// steps, each older step weighing costDecay times less, and keeps the time per token
// returned over the same steps.
type stepCosts struct {
	w, r, rr, t, rt, tokens float64 // decayed sums of 1, rows, rows², time, rows·time, tokens
}

// costDecay weighs older steps in stepCosts.
const costDecay = 0.97

// minTimed is the weight of timed steps (with rows of more than one count) before
// stepCosts trusts its fit.
const minTimed = 8

// add records a step of rows rows that took d and completed tokens tokens.
func (c *stepCosts) add(rows, tokens int, d time.Duration) {
	r, t := float64(rows), d.Seconds()
	c.w = costDecay*c.w + 1
	c.r = costDecay*c.r + r
	c.rr = costDecay*c.rr + r*r
	c.t = costDecay*c.t + t
	c.rt = costDecay*c.rt + r*t
	c.tokens = costDecay*c.tokens + float64(tokens)
}

// fit returns b, the time one more row adds to a step, and the time per token, or
// ok false while the steps recorded cannot tell them (too few, or all of one size).
func (c *stepCosts) fit() (perRow, perToken float64, ok bool) {
	den := c.w*c.rr - c.r*c.r
	if c.w < minTimed || c.tokens <= 0 || den <= 1e-9*c.w*c.w {
		return 0, 0, false
	}
	b := (c.w*c.rt - c.r*c.t) / den
	return math.Max(b, 0), c.t / c.tokens, true
}

// breakEven returns the chance of being confirmed at which a speculated token pays for
// its rows: it costs perRow in each of the passes steps it stays in flight, and saves,
// when confirmed, the time a token takes (perToken). It returns fallback while the fit
// is not ready, and stays within [minBreakEven, maxBreakEven] so that a noisy fit
// neither floods the pipeline nor stops speculation.
func (c *stepCosts) breakEven(passes int, fallback float64) float64 {
	perRow, perToken, ok := c.fit()
	if !ok || perToken <= 0 {
		return fallback
	}
	return math.Min(math.Max(float64(passes)*perRow/perToken, minBreakEven), maxBreakEven)
}

// The bounds of stepCosts.breakEven.
const (
	minBreakEven = 0.2
	maxBreakEven = 0.9
)
