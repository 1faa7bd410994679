//go:build !amd64 || purego

package kernels

// opsKernelsFor returns nil: only the pure-Go reference exists on this platform.
func opsKernelsFor() *opsKernels { return nil }

// softmaxExpFor returns nil: Softmax uses ExpSum.
func softmaxExpFor() func(x *float32, n int, m float32) float32 { return nil }
