package kvquant

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrInvalid means bad arguments: a datatype that is not 2^b ascending signposts, a bad
// shape or outlier fraction.
var ErrInvalid = errors.New("kvquant: invalid input")

// MinBits and MaxBits bound the code width of a Datatype.
const (
	MinBits = 2
	MaxBits = 4
)

// Datatype is a b-bit quantization datatype: 2^b signposts in [−1, 1], ascending, to which
// a normalized value u (see Range) is rounded (the nearest one; the lower one on a tie),
// and the levels a code decodes to. Levels equal Signposts unless Q-Norm corrected them
// (WithQNorm): encoding always uses Signposts, decoding Levels, as KVQuant does.
//
// One datatype serves one layer's keys or values (KVQuant's per-layer nuq datatypes); the
// per-channel or per-token Range scales it to each vector.
type Datatype struct {
	// Signposts are the 2^b encoding points, ascending, in [−1, 1].
	Signposts []float32
	// Levels are the 2^b decoded values, Levels[c] for code c.
	Levels []float32
}

// NewDatatype returns the datatype with the given signposts (copied) and Levels equal to
// them, after checking that there are 2^b of them for b in [MinBits, MaxBits], finite,
// strictly ascending, in [−1, 1]. Errors wrap ErrInvalid.
func NewDatatype(signposts []float32) (Datatype, error) {
	t := Datatype{Signposts: slices.Clone(signposts), Levels: slices.Clone(signposts)}
	if err := t.Check(); err != nil {
		return Datatype{}, err
	}
	return t, nil
}

// Check reports (wrapping ErrInvalid) why t is not a usable datatype: Signposts must be
// 2^b strictly ascending values in [−1, 1] with b in [MinBits, MaxBits], and Levels as
// many finite values.
func (t Datatype) Check() error {
	n := len(t.Signposts)
	if n < 1<<MinBits || n > 1<<MaxBits || n&(n-1) != 0 {
		return fmt.Errorf("%w: %d signposts, want 4, 8 or 16", ErrInvalid, n)
	}
	if len(t.Levels) != n {
		return fmt.Errorf("%w: %d levels for %d signposts", ErrInvalid, len(t.Levels), n)
	}
	for i, s := range t.Signposts {
		if !(s >= -1 && s <= 1) {
			return fmt.Errorf("%w: signpost %d is %v, outside [-1, 1]", ErrInvalid, i, s)
		}
		if i > 0 && s <= t.Signposts[i-1] {
			return fmt.Errorf("%w: signposts do not ascend at %d (%v after %v)", ErrInvalid, i, s, t.Signposts[i-1])
		}
	}
	for i, l := range t.Levels {
		if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
			return fmt.Errorf("%w: level %d is %v", ErrInvalid, i, l)
		}
	}
	return nil
}

// Bits is b: codes are b bits wide.
func (t Datatype) Bits() int {
	switch len(t.Signposts) {
	case 4:
		return 2
	case 8:
		return 3
	default:
		return 4
	}
}

// Code returns the code of normalized value u: the index of the nearest signpost (the
// lower one on a tie; values beyond ±1 get the end codes; NaN gets code 0).
func (t Datatype) Code(u float32) uint8 {
	s := t.Signposts
	lo, hi := 0, len(s)-1
	// Binary search on the midpoints: the answer is the number of midpoints below u.
	for lo < hi {
		m := (lo + hi) / 2
		if u > (s[m]+s[m+1])/2 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return uint8(lo)
}

// Uniform returns the b-bit uniform integer datatype: 2^b evenly spaced signposts from −1
// to 1, which with a vector's Range is asymmetric min-max integer quantization (KVQuant's
// int baselines, without rounding the zero point).
func Uniform(bits int) (Datatype, error) {
	if bits < MinBits || bits > MaxBits {
		return Datatype{}, fmt.Errorf("%w: %d bits", ErrInvalid, bits)
	}
	n := 1 << bits
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(-1 + 2*float64(i)/float64(n-1))
	}
	return NewDatatype(s)
}

// nfOffset is QLoRA's NormalFloat offset 0.5·(1/32 + 1/30): the outermost quantile used.
const nfOffset = 0.5 * (1.0/32 + 1.0/30)

// NormalFloat returns the b-bit NormalFloat datatype (Dettmers et al., QLoRA, 2023; the
// KVQuant nf baselines): signposts at quantiles of the standard normal, scaled so that the
// outermost (at probabilities offset and 1−offset, offset = 0.5·(1/32 + 1/30)) are ±1.
// Probabilities are evenly spaced on each side of 0.5, as QLoRA's asymmetric type: 2^(b−1)
// positive signposts, 2^(b−1)−1 negative ones and 0.
func NormalFloat(bits int) (Datatype, error) {
	if bits < MinBits || bits > MaxBits {
		return Datatype{}, fmt.Errorf("%w: %d bits", ErrInvalid, bits)
	}
	half := 1 << (bits - 1)
	ppf := func(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
	top := ppf(1 - nfOffset)
	var s []float32
	// Negative side: half points at probabilities offset..0.5 (the last is 0).
	for i := range half {
		p := nfOffset + (0.5-nfOffset)*float64(i)/float64(half-1)
		s = append(s, float32(ppf(p)/top))
	}
	// Positive side: half+1 points at 0.5..1−offset, without the 0 already there.
	for i := 1; i <= half; i++ {
		p := 0.5 + (0.5-nfOffset)*float64(i)/float64(half)
		s = append(s, float32(ppf(p)/top))
	}
	s[0], s[len(s)-1], s[half-1] = -1, 1, 0
	return NewDatatype(s)
}

// WithQNorm returns t with Q-Norm levels (KVQuant §3 v3, "Q-Norm"): for the normalized
// non-outlier calibration values u (NaN entries are skipped) and their quantized values
// Q(u) = Signposts[Code(u)], with means m1, m2 and standard deviations σ1, σ2, each level
// becomes (Signposts[c] − m2)·σ1/σ2 + m1, so that the decoded distribution has the mean
// and spread of the original. Encoding still rounds to Signposts. With no usable values
// (or σ2 = 0) it returns t unchanged.
func (t Datatype) WithQNorm(u []float32) Datatype {
	var n, s1, q1, s2, q2 float64
	for _, x := range u {
		if x != x {
			continue
		}
		y := float64(t.Signposts[t.Code(x)])
		n++
		s1 += float64(x)
		q1 += float64(x) * float64(x)
		s2 += y
		q2 += y * y
	}
	if n == 0 {
		return t
	}
	m1, m2 := s1/n, s2/n
	v1, v2 := q1/n-m1*m1, q2/n-m2*m2
	if !(v2 > 0) || !(v1 >= 0) {
		return t
	}
	scale := math.Sqrt(v1 / v2)
	out := Datatype{Signposts: t.Signposts, Levels: make([]float32, len(t.Signposts))}
	for i, c := range t.Signposts {
		out.Levels[i] = float32((float64(c)-m2)*scale + m1)
	}
	return out
}
