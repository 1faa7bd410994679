//go:build !amd64 || purego

package kernels

// dotI8Kernel returns no kernel: I8Matrix.Dots runs the reference loop.
func dotI8Kernel() *dotI8Kernels { return nil }
