//go:build amd64 && !purego

package kernels

// gemm12x32AVX512 computes a 12-token by 32-row tile: for t < 12 and j < 32,
//
//	c[t*ldc+j] = sum_{p<k} x[t*ldx+p] * a[p*32+j]
//
// where a is a packed panel (32 weight rows transposed: element p of row j at p*32+j).
//
//go:noescape
func gemm12x32AVX512(k int, a *float32, x *float32, ldx int, c *float32, ldc int)

// gemm6x16AVX2 computes a 6-token by 16-row tile from a panel with the same 32-float
// stride: for t < 6 and j < 16, c[t*ldc+j] = sum_{p<k} x[t*ldx+p] * a[p*32+j].
//
//go:noescape
func gemm6x16AVX2(k int, a *float32, x *float32, ldx int, c *float32, ldc int)

var (
	gemmAVX512 = gemmKernel{mr: 12, nr: 32, fn: gemm12x32AVX512}
	gemmAVX2   = gemmKernel{mr: 6, nr: 16, fn: gemm6x16AVX2}
)

// gemmKernelFor returns the GEMM micro-kernel cpuHas allows, nil for none.
func gemmKernelFor() *gemmKernel {
	switch {
	case cpuHas.AVX512:
		return &gemmAVX512
	case cpuHas.AVX2FMA:
		return &gemmAVX2
	}
	return nil
}
