//go:build !amd64 || purego

package kernels

import "unsafe"

// prefetchLines does nothing: prefetching is only a hint.
func prefetchLines(p unsafe.Pointer, n int) {}

// prefetchLinesL2 does nothing: prefetching is only a hint.
func prefetchLinesL2(p unsafe.Pointer, n int) {}
