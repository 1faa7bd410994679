//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

func detectCPU() features {
	x := cpu.X86
	var f features
	f.AVX2FMA = x.HasAVX2 && x.HasFMA
	f.AVX512 = f.AVX2FMA && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL
	f.AVX512VNNI = f.AVX512 && x.HasAVX512VNNI
	f.AVX512BF16 = f.AVX512 && x.HasAVX512BF16
	return f
}
