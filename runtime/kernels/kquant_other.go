//go:build !amd64 || purego

package kernels

func q4KFast(f *format) {}

func q5KFast(f *format) {}

func q6KFast(f *format) {}
