//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

func init() {
	x := cpu.X86
	cpuHas.AVX2FMA = x.HasAVX2 && x.HasFMA
	cpuHas.AVX512 = cpuHas.AVX2FMA && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL
	cpuHas.AVX512VNNI = cpuHas.AVX512 && x.HasAVX512VNNI
	cpuHas.AVX512BF16 = cpuHas.AVX512 && x.HasAVX512BF16
}
