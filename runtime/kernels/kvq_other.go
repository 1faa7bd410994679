//go:build !amd64 || purego

package kernels

// kvqKernelsFor returns nil: only the pure-Go kernels exist on this platform.
func kvqKernelsFor() *kvqKernels { return nil }
