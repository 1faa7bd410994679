//go:build !amd64 || purego

package kernels

// installQ5_0 installs the reference implementations: this build has no assembly.
func installQ5_0(f *format) {
	f.dequant = dequantQ5_0Ref
	f.dotRows = dotRowsQ5_0Ref
}
