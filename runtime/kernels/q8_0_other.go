//go:build !amd64 || purego

package kernels

// installQ8_0 installs the reference implementations: this build has no assembly.
func installQ8_0(f *format) {
	f.dequant = dequantQ8_0Ref
	f.dotRows = dotRowsQ8_0Ref
}
