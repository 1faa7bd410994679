package kernels

import "unsafe"

// Prefetch asks the processor to start loading the cache lines holding x into its
// caches, so that a read of x soon after does not wait for memory. It has no other
// effect (none at all where no prefetch instruction is available). Sparse attention
// calls it for the spans of keys and values it reads next: short runs at scattered
// addresses, which the hardware prefetchers do not anticipate.
func Prefetch[T any](x []T) {
	if len(x) == 0 {
		return
	}
	var e T
	prefetchLines(unsafe.Pointer(unsafe.SliceData(x)), len(x)*int(unsafe.Sizeof(e)))
}

// PrefetchL2 is Prefetch into the second-level cache only (PREFETCHT1): for data read
// a while later, in larger amounts than the first-level cache's outstanding misses
// allow.
func PrefetchL2[T any](x []T) {
	if len(x) == 0 {
		return
	}
	var e T
	prefetchLinesL2(unsafe.Pointer(unsafe.SliceData(x)), len(x)*int(unsafe.Sizeof(e)))
}
