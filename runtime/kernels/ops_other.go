//go:build !amd64 || purego

package kernels

// opsKernelsFor returns nil: only the pure-Go reference exists on this platform.
func opsKernelsFor() *opsKernels { return nil }
