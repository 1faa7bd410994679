package earlyexit

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestStepCosts feeds stepCosts steps whose times are a + b·rows with noise and checks
// the fitted per-row and per-token times and the break-even chance.
func TestStepCosts(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		a, b     float64 // ms
		tokens   int     // per step
		wantEven float64
	}{
		{a: 0.4, b: 0.1, tokens: 1, wantEven: -1}, // 3·b / time per token
		{a: 0.4, b: 0.3, tokens: 1, wantEven: -1},
		{a: 1, b: 0.001, tokens: 1, wantEven: minBreakEven},
		{a: 0.1, b: 1, tokens: 2, wantEven: maxBreakEven},
	}
	for _, tc := range tests {
		var c stepCosts
		if got := c.breakEven(3, 0.5); got != 0.5 {
			t.Fatalf("no steps: break-even %v, want the fallback 0.5", got)
		}
		var sum, n float64
		for range 200 {
			rows := 1 + r.IntN(8)
			ms := (tc.a + tc.b*float64(rows)) * (1 + 0.02*(r.Float64()-0.5))
			c.add(rows, tc.tokens, time.Duration(ms*float64(time.Millisecond)))
			sum += ms
			n++
		}
		perRow, perToken, ok := c.fit()
		if !ok || math.Abs(perRow*1e3-tc.b) > 0.02*tc.a+0.02*tc.b || perToken <= 0 {
			t.Errorf("a %v b %v: fit %v ms per row, %v ms per token, %v", tc.a, tc.b, perRow*1e3, perToken*1e3, ok)
		}
		want := tc.wantEven
		if want < 0 {
			want = 3 * perRow / perToken
		}
		if got := c.breakEven(3, 0.5); math.Abs(got-want) > 1e-9 {
			t.Errorf("a %v b %v: break-even %v, want %v", tc.a, tc.b, got, want)
		}
	}
	// Steps all of one size tell nothing about rows.
	var c stepCosts
	for range 50 {
		c.add(3, 1, time.Millisecond)
	}
	if _, _, ok := c.fit(); ok {
		t.Error("steps of one size: fit claims to know the cost of a row")
	}
}
