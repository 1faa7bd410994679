package kernels

// features are the instruction-set extensions the kernels may use.
type features struct {
	AVX2FMA    bool // AVX2 and FMA3
	AVX512     bool // AVX-512 F, BW, DQ and VL
	AVX512VNNI bool // AVX-512 VNNI (int8 dot products)
	AVX512BF16 bool // AVX-512 BF16
}

// cpuHas is detected during package variable initialization, so it is set before any
// init function runs. Tests switch features off to reach slower paths (withFeatures).
var cpuHas = detectCPU()
