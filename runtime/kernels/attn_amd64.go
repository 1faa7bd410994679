//go:build amd64 && !purego

package kernels

// attn_gen.go writes the assembly of this file.
//go:generate go run attn_gen.go

// attnExp2SumAVX2 sets x[i] = 2^(x[i]-m) for i < n (n a multiple of 8; x[i] <= m) and
// returns their sum. Results below 2^-126 come out as 2^-126 (they are added to at
// least 1); the relative error is about 2e-7.
//
//go:noescape
func attnExp2SumAVX2(x *float32, n int, m float32) float32

// attnExp2SumAVX512 is attnExp2SumAVX2 for n a multiple of 16.
//
//go:noescape
func attnExp2SumAVX512(x *float32, n int, m float32) float32

// attnMaxAVX512 returns max_{i<n} x[i], n a positive multiple of 16.
//
//go:noescape
func attnMaxAVX512(x *float32, n int) float32

// attnMaxFor returns the row maximum cpuHas allows (AVX-512; AVX2 uses the ops
// package's) and its width, nil for none.
func attnMaxFor() (func(x *float32, n int) float32, int) {
	if cpuHas.AVX512 {
		return attnMaxAVX512, 16
	}
	return nil, 0
}

// attnExp2For returns the softmax step cpuHas allows and its width, nil for the
// reference.
func attnExp2For() (func(x *float32, n int, m float32) float32, int) {
	switch {
	case cpuHas.AVX512:
		return attnExp2SumAVX512, 16
	case cpuHas.AVX2FMA:
		return attnExp2SumAVX2, 8
	}
	return nil, 0
}
