package kernels

// Features the kernels may use, detected once at start-up. Tests switch them off to run
// the slower paths on machines that have the faster ones (see withFeatures).
var cpuHas struct {
	AVX2FMA    bool // AVX2 and FMA3
	AVX512     bool // AVX-512 F, BW, DQ and VL
	AVX512VNNI bool // AVX-512 VNNI (int8 dot products)
	AVX512BF16 bool // AVX-512 BF16
}
