//go:build !amd64 || purego

package kernels

func detectCPU() features { return features{} }
