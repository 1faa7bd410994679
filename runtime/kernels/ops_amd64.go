//go:build amd64 && !purego

package kernels

// The kernels below work on n elements, n a multiple of 8; callers finish the rest.
// exp is approximated (relative error about 2e-7, see ops_amd64.s): results below the
// smallest normal float32 flush to zero and arguments above 88.37 saturate there.

// expSubSumAVX2 sets x[i] = exp(x[i]-m) for i < n and returns their sum.
//
//go:noescape
func expSubSumAVX2(x *float32, n int, m float32) float32

// siluMulAVX2 sets gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n.
//
//go:noescape
func siluMulAVX2(gate, up *float32, n int)

// expAVX2 sets x[i] = exp(x[i]) for i < n.
//
//go:noescape
func expAVX2(x *float32, n int)

// maxAVX2 returns max_{i<n} x[i]; n >= 8.
//
//go:noescape
func maxAVX2(x *float32, n int) float32

// scaleAVX2 sets x[i] *= a for i < n.
//
//go:noescape
func scaleAVX2(x *float32, n int, a float32)

// expSubSumAVX512 sets x[i] = exp(x[i]-m) for i < n (any n >= 0; the last n%16
// elements under a mask, nothing touched past n) and returns their sum, accumulated in
// 16 lanes: expSubSumAVX2's exp, in another order of addition.
//
//go:noescape
func expSubSumAVX512(x *float32, n int, m float32) float32

// softmaxExpFor returns Softmax's exp-and-sum step that cpuHas allows, nil where
// Softmax uses ExpSum.
func softmaxExpFor() func(x *float32, n int, m float32) float32 {
	if cpuHas.AVX512 {
		return expSubSumAVX512
	}
	return nil
}

var opsAVX2 = opsKernels{expSubSum: expSubSumAVX2, siluMul: siluMulAVX2, exp: expAVX2, max: maxAVX2, scale: scaleAVX2}

// opsKernelsFor returns the element-wise kernels cpuHas allows, nil for the reference.
func opsKernelsFor() *opsKernels {
	if cpuHas.AVX2FMA {
		return &opsAVX2
	}
	return nil
}
