//go:build amd64 && !purego

package kernels

// installQ4_0 installs the fastest Q4_0 kernels cpuHas allows.
func installQ4_0(f *format) {
	f.dequant = dequantQ4_0Ref
	f.dotRows = dotRowsQ4_0Ref
}
