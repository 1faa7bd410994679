//go:build amd64 && !purego

package kernels

import "unsafe"

// prefetchLines issues PREFETCHT0 for every 64-byte line that holds one of the n bytes
// at p (n ≥ 1): for a := p &^ 63; a < p+n; a += 64 { prefetch(a) }.
//
//go:noescape
func prefetchLines(p unsafe.Pointer, n int)

// prefetchLinesL2 is prefetchLines with PREFETCHT1 (into the second-level cache).
//
//go:noescape
func prefetchLinesL2(p unsafe.Pointer, n int)
