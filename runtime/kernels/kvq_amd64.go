//go:build amd64 && !purego

package kernels

// The kernels below decode groups of 8 codes of bits bits (2, 3 or 4; bits bytes per
// group, see Pack in package kvquant) through levels, 16 floats (entries past 2^bits
// unused).

// kvqDecodeChannelAVX2 sets dst[j] = mid[j] + half[j]·levels[code j] for j < 8·groups.
//
//go:noescape
func kvqDecodeChannelAVX2(dst *float32, src *byte, groups, bits int, levels, half, mid *float32)

// kvqDecodeTokenAVX2 sets dst[j] = mid + half·levels[code j] for j < 8·groups.
//
//go:noescape
func kvqDecodeTokenAVX2(dst *float32, src *byte, groups, bits int, levels *float32, half, mid float32)

// kvqAxpyTokenAVX2 sets y[j] += a·levels[code j] for j < 8·groups.
//
//go:noescape
func kvqAxpyTokenAVX2(a float32, src *byte, groups, bits int, levels *float32, y *float32)

// kvqRotateAdjAVX2 turns the pairs (x[2i], x[2i+1]) for i < 4·quads by the angles of
// cos[i], sin[i]: (a, b) becomes (a·c − b·s, a·s + b·c).
//
//go:noescape
func kvqRotateAdjAVX2(x, cos, sin *float32, quads int)

// kvqRotateNeoXAVX2 turns the pairs (lo[i], hi[i]) for i < 8·octs likewise.
//
//go:noescape
func kvqRotateNeoXAVX2(lo, hi, cos, sin *float32, octs int)

// kvqKernelsFor returns the AVX2 kernels when cpuHas allows them, nil for the reference.
func kvqKernelsFor() *kvqKernels {
	if cpuHas.AVX2FMA {
		return &kvqKernels{
			decodeChannel: kvqDecodeChannelAVX2, decodeToken: kvqDecodeTokenAVX2, axpyToken: kvqAxpyTokenAVX2,
			rotateAdj: kvqRotateAdjAVX2, rotateNeoX: kvqRotateNeoXAVX2,
		}
	}
	return nil
}
