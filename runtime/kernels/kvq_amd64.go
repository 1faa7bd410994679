//go:build amd64 && !purego

package kernels

//go:generate go run kvq_gen.go

import "golang.org/x/sys/cpu"

// The kernels below (AVX2 and FMA; see kvqFast) decode groups of 8 codes of bits bits (2, 3 or 4; bits bytes per
// group, see Pack in package kvquant) through levels, 16 floats (entries past 2^bits
// unused).

// kvqDecodeChannelGroups sets dst[j] = mid[j] + half[j]·levels[code j] for j < 8·groups.
//
//go:noescape
func kvqDecodeChannelGroups(dst *float32, src *byte, groups, bits int, levels, half, mid *float32)

// kvqDecodeTokenGroups sets dst[j] = mid + half·levels[code j] for j < 8·groups.
//
//go:noescape
func kvqDecodeTokenGroups(dst *float32, src *byte, groups, bits int, levels *float32, half, mid float32)

// kvqAxpyTokenGroups sets y[j] += a·levels[code j] for j < 8·groups.
//
//go:noescape
func kvqAxpyTokenGroups(a float32, src *byte, groups, bits int, levels *float32, y *float32)

// kvqRotateAdjGroups turns the pairs (x[2i], x[2i+1]) for i < 4·quads by the angles of
// cos[i], sin[i]: (a, b) becomes (a·c − b·s, a·s + b·c).
//
//go:noescape
func kvqRotateAdjGroups(x, cos, sin *float32, quads int)

// kvqRotateNeoXGroups turns the pairs (lo[i], hi[i]) for i < 8·octs likewise.
//
//go:noescape
func kvqRotateNeoXGroups(lo, hi, cos, sin *float32, octs int)

// kvqAnglesGroups sets cos[i] = ch[i]·cl[i] − sh[i]·sl[i] and sin[i] = sh[i]·cl[i] +
// ch[i]·sl[i] for i < 8·octs: the angles of a sum from those of its parts.
//
//go:noescape
func kvqAnglesGroups(cos, sin, ch, sh, cl, sl *float32, octs int)

// kvqDecodeRotateGroups is kvqDecodeChannelGroups followed by the rotation of the
// adjacent pairs (dst[2i], dst[2i+1]) by the angles composed from ch, sh, cl, sl as
// kvqAnglesGroups composes them (4 pairs per group).
//
//go:noescape
func kvqDecodeRotateGroups(dst *float32, src *byte, groups, bits int, levels, half, mid, ch, sh, cl, sl *float32)

// kvqDotGroups returns Σ a[i]·b[i] for i < 8·octs.
//
//go:noescape
func kvqDotGroups(a, b *float32, octs int) float32

// kvqAvailable reports whether the kernels above may run.
func kvqAvailable() bool { return cpuHas.AVX2FMA }

// kvq512Available reports whether the AVX-512 kernels below may run (they unpack codes
// with VPMULTISHIFTQB, AVX-512 VBMI).
func kvq512Available() bool { return cpuHas.AVX512 && cpu.X86.HasAVX512VBMI }

// kvqScoreKeysRows is KVQScoreKeys's kernel for n rows: q holds the vectors interleaved
// per group (vector v's values 8g..8g+7 at 32g + 8v), dst is strided by dstride.
//
//go:noescape
func kvqScoreKeysRows(dst *float32, dstride int, q *float32, nq int, src *byte, n, dim, bits int, levels, ranges *float32, pos *int32, hi, lo *float32)

// kvqAccumTokenRows is KVQAccumulateTokens's kernel for n rows: a holds the weights
// row-major, 4 per row (vector v's weight of row i at 4i + v).
//
//go:noescape
func kvqAccumTokenRows(out *float32, ostride int, a *float32, nq int, src *byte, n, dim, bits int, levels *float32)

// kvqAccumTokenRows512 is KVQAccumulateTokens's kernel for dim a multiple of 64 (AVX-512
// VBMI): out[v*ostride+j] += off[v] + Σ_i a[astride·v+i]·levels[code j of row i] for
// v < nq, i < n, j < dim, each block of 64 values of up to 4 vectors kept in registers
// while the rows go by, 16 codes unpacked per instruction. off holds 4 values.
//
//go:noescape
func kvqAccumTokenRows512(out *float32, ostride int, a *float32, astride, nq int, off *float32, src *byte, n, dim, bits int, levels *float32)

// kvqScaleWeights512 sets a[astride·v+i] = w[v*wstride+i]·half[i] for v < nq and i < n
// (1 to astride; a has room for n rounded up to 16 per vector) and off[v] =
// Σ_i w[v*wstride+i]·mid[i] (AVX-512).
//
//go:noescape
func kvqScaleWeights512(a *float32, astride int, w *float32, wstride, nq int, half, mid *float32, n int, off *float32)

// kvqScoreKeysLo512 is KVQScoreKeysLo's kernel for n rows (AVX-512 VBMI): 16 values of a
// key per step, decoded, rotated by the high angles and dotted with up to 4 vectors.
//
//go:noescape
func kvqScoreKeysLo512(dst *float32, dstride int, prep *float32, nq int, src *byte, n, dim, bits int, levels, ranges *float32, pos *int32, hi *float32)

// kvqScoreKeys64x4 is KVQScoreKeysLo's kernel for rows of 64 values (rows at least 1;
// AVX-512 VBMI): ⌈rows/4⌉ blocks of four rows decoded and rotated side by side, the
// ranges kept in registers, and a block's 4·nq sums reduced together; the last block
// reads the codes and positions of all four of its rows but stores only those of the
// rows it has. It reports false, having stopped, at a block with a position whose row
// p/32 is not below hiRows.
//
//go:noescape
func kvqScoreKeys64x4(dst *float32, dstride int, prep *float32, nq int, src *byte, rows, bits int, levels, ranges *float32, pos *int32, hi *float32, hiRows int) bool

// kvqTurnQueries512 is KVQRotateQueries's kernel (AVX-512): for each position l of 32,
// group g and vector v in turn, the vector's 16 values of the group times the group's
// cosines, plus the pair-swapped values times its signed sines, stored one after another.
//
//go:noescape
func kvqTurnQueries512(dst, q *float32, nq, dim int, back *float32)
