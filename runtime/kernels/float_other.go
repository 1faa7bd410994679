//go:build !amd64 || purego

package kernels

// floatKernelsFor returns nil: only the pure-Go reference exists on this platform.
func floatKernelsFor() *floatKernels { return nil }
