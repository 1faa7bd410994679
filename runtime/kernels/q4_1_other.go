//go:build !amd64 || purego

package kernels

// installQ4_1 installs the reference implementation: this build has no assembly.
func installQ4_1(f *format) { f.dotRows = dotRowsQ4_1Ref }
