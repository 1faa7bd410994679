//go:build !amd64 || purego

package kernels

import "unsafe"

// dotLoopFunc is the type of the looped multi-vector kernels (none here).
type dotLoopFunc func(w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int)

// dotLoopFor returns no kernels: MatMul calls the multi-vector kernels per 4 rows.
func dotLoopFor(int) []dotLoopFunc { return nil }

// dotPadOK reports false: DotRowsPadded has no kernel here.
func dotPadOK() bool { return false }

// dotPad is what the amd64 kernels compute, in Go (never reached while dotPadOK is
// false): for groups groups of 4 F16 rows, row k at w + k*rowBytes, and nv vectors
// x[v*xstride:] of n elements, out[v*ostride+k] accumulates in lanes (16 or 8) over
// chunks of as many elements (zeros past n) and then adds its lanes.
func dotPad(lanes, nv int, w unsafe.Pointer, rowBytes int, x *float32, xstride int, n int, out *float32, ostride int, groups int) {
	xs := unsafe.Slice(x, (nv-1)*xstride+n)
	outs := unsafe.Slice(out, (nv-1)*ostride+4*groups)
	for k := range 4 * groups {
		row := unsafe.Slice((*uint16)(unsafe.Add(w, k*rowBytes)), n)
		for v := range nv {
			var acc [16]float32
			for i, h := range row {
				acc[i%lanes] += xs[v*xstride+i] * F16ToF32(h)
			}
			for width := lanes / 2; width >= 1; width /= 2 {
				for l := range width {
					acc[l] += acc[l+width]
				}
			}
			outs[v*ostride+k] = acc[0]
		}
	}
}
