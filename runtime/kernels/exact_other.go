//go:build !amd64 || purego

package kernels

// exactMultiFor returns no kernels: MatMulExact runs the f32 kernel once per vector.
func exactMultiFor(int) []exactMultiFunc { return nil }

// accumKernelsFor returns no kernels: AccumulateF16 calls AxpyF16 row by row.
func accumKernelsFor() []accumFunc { return nil }
