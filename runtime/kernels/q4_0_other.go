//go:build !amd64 || purego

package kernels

// installQ4_0 installs the reference implementations: this build has no assembly.
func installQ4_0(f *format) {
	f.dequant = dequantQ4_0Ref
	f.dotRows = dotRowsQ4_0Ref
}
