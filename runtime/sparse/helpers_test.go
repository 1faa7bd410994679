package sparse

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/index"
	"squeeze/runtime/kernels"
)

// rowsFunc returns the S x hd keys (post-RoPE) or values of layer l, KV head h.
type rowsFunc func(l, h int) []float32

// synthContext builds a Context over S positions whose keys and values come from keys and
// vals: the always-attended positions are always, the others are clustered in order,
// leaf consecutive positions per finest cluster and, when branch > 0, branch leaf clusters
// per parent in a coarser level. Centroids are means of the raw keys.
func synthContext(tb testing.TB, layers, kvHeads, hd, S int, keys, vals rowsFunc, always []int32, leaf, branch int) *Context {
	tb.Helper()
	isAlways := make([]bool, S)
	for _, p := range always {
		isAlways[p] = true
	}
	var order []int32
	for p := range S {
		if !isAlways[p] {
			order = append(order, int32(p))
		}
	}
	n := len(order)
	c := &Context{Tokens: make([]int32, S), Layers: make([][]Head, layers)}
	for l := range layers {
		c.Layers[l] = make([]Head, kvHeads)
		for h := range kvHeads {
			k, v := keys(l, h), vals(l, h)
			ks, vs := make([]float32, n*hd), make([]float32, n*hd)
			for i, p := range order {
				copy(ks[i*hd:(i+1)*hd], k[int(p)*hd:])
				copy(vs[i*hd:(i+1)*hd], v[int(p)*hd:])
			}
			var leafStart []int32
			for s := 0; s < n; s += leaf {
				leafStart = append(leafStart, int32(s))
			}
			leafStart = append(leafStart, int32(n))
			levels := []index.Level{{Centroids: means(ks, hd, leafStart), Start: leafStart}}
			if branch > 0 {
				nc := len(leafStart) - 1
				var top []int32
				for s := 0; s < nc; s += branch {
					top = append(top, int32(s))
				}
				top = append(top, int32(nc))
				keyStart := make([]int32, len(top))
				for i, t := range top {
					keyStart[i] = leafStart[t]
				}
				levels = append([]index.Level{{Centroids: means(ks, hd, keyStart), Start: top}}, levels...)
			}
			tree, err := index.New(hd, levels, slices.Clone(order))
			if err != nil {
				tb.Fatal(err)
			}
			ak, av := make([]float32, len(always)*hd), make([]float32, len(always)*hd)
			for i, p := range always {
				copy(ak[i*hd:(i+1)*hd], k[int(p)*hd:])
				copy(av[i*hd:(i+1)*hd], v[int(p)*hd:])
			}
			c.Layers[l][h] = Head{
				Tree: tree, Keys: NewF16Rows(hd, ks), Values: NewF16Rows(hd, vs),
				Always: slices.Clone(always), AlwaysK: NewF16Rows(hd, ak), AlwaysV: NewF16Rows(hd, av),
			}
		}
	}
	return c
}

// means returns the mean row of each range [start[j], start[j+1]) of rows.
func means(rows []float32, hd int, start []int32) []float32 {
	out := make([]float32, (len(start)-1)*hd)
	for j := range len(start) - 1 {
		for i := start[j]; i < start[j+1]; i++ {
			kernels.Axpy(1/float32(start[j+1]-start[j]), rows[int(i)*hd:(int(i)+1)*hd], out[j*hd:(j+1)*hd])
		}
	}
	return out
}

// clustered returns S x hd rows drawn around one random center per run of about
// per consecutive positions (so that clusters mean something), scaled by amp.
func clustered(rng *rand.Rand, S, hd, per int, amp float64) []float32 {
	out := make([]float32, S*hd)
	center := make([]float64, hd)
	for p := range S {
		if p%per == 0 {
			for i := range center {
				center[i] = rng.NormFloat64() * amp
			}
		}
		for i := range hd {
			out[p*hd+i] = float32(center[i] + 0.3*amp*rng.NormFloat64())
		}
	}
	return out
}

// randVec returns n standard normal values scaled by amp.
func randVec(rng *rand.Rand, n int, amp float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * amp)
	}
	return out
}

// roundF16 returns x rounded through half precision.
func roundF16(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(kernels.F16ToF32(kernels.F32ToF16(v)))
	}
	return out
}

// naiveAttend is the float64 reference: softmax over q·k for the listed positions of the
// S x hd keys and values (rounded to f16 as the context stores them); it returns the
// output and the log-sum-exp.
func naiveAttend(q []float32, keys, vals []float64, hd int, positions []int32) ([]float64, float64) {
	out := make([]float64, hd)
	if len(positions) == 0 {
		return out, math.Inf(-1)
	}
	sc := make([]float64, len(positions))
	m := math.Inf(-1)
	for i, p := range positions {
		var s float64
		for d := range hd {
			s += float64(q[d]) * keys[int(p)*hd+d]
		}
		sc[i] = s
		m = max(m, s)
	}
	var sum float64
	for i, p := range positions {
		w := math.Exp(sc[i] - m)
		sum += w
		for d := range hd {
			out[d] += w * vals[int(p)*hd+d]
		}
	}
	for d := range out {
		out[d] /= sum
	}
	return out, m + math.Log(sum)
}
