//go:build !amd64 || purego

package kernels

// installQ5_1 installs the reference implementation: this build has no assembly.
func installQ5_1(f *format) { f.dotRows = dotRowsQ5_1Ref }
