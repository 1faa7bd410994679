//go:build !amd64 || purego

package kernels

// gemmKernelFor returns nil: without SIMD, MatMul uses dotRows for every vector.
func gemmKernelFor() *gemmKernel { return nil }
