package index

import (
	"math"
	"testing"
)

func TestExpNeg(t *testing.T) {
	for i := range 200001 {
		x := -float64(i) * 0.0036 // 0 down to −720
		got, want := expNeg(x), math.Exp(x)
		if x <= -708 {
			if got != 0 {
				t.Fatalf("expNeg(%v) = %v, want 0", x, got)
			}
			continue
		}
		if math.Abs(got-want) > 2e-7*want {
			t.Fatalf("expNeg(%v) = %v, math.Exp %v", x, got, want)
		}
	}
	if expNeg(math.Inf(-1)) != 0 || expNeg(math.NaN()) != 0 {
		t.Fatal("expNeg(−Inf) or expNeg(NaN) is not 0")
	}
}
