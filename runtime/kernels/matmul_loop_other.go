//go:build !amd64 || purego

package kernels

import "unsafe"

// dotLoopFunc is the type of the looped multi-vector kernels (none here).
type dotLoopFunc func(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dotLoopFor returns no kernels: MatMul calls the multi-vector kernels per 4 rows.
func dotLoopFor(int) []dotLoopFunc { return nil }
