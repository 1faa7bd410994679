package kernels

import "unsafe"

// Kernels of quantized KV rows (package kvquant): codes of 2, 3 or 4 bits packed
// little-endian (code j at bits j·b .. j·b+b−1 of the row, from the least significant
// bit of its first byte), decoded through a table. Each works on one row; groups of 8
// codes (b bytes) are unpacked with one load.

// kvqFast reports whether the group kernels of kvq_amd64.s may run (AVX2 and FMA); the
// pure-Go loops below serve otherwise. The kernels are called directly (not through
// function values) so that their arguments, often buffers on the caller's stack, do not
// escape to the heap.
var kvqFast bool

// kvq512 reports whether the AVX-512 multi-row kernels may run.
var kvq512 bool

func init() { addReinit(func() { kvqFast, kvq512 = kvqAvailable(), kvq512Available() }) }

// KVQLevels are a datatype's decoded levels padded to 16 entries, the form the decoding
// kernels read (entries past 2^bits are not used).
type KVQLevels [16]float32

// KVQDecodeChannel sets dst[j] = mid[j] + half[j]·levels[code j of src] for j < len(dst):
// a row with one range per channel (keys). bits is 2, 3 or 4; src holds
// ⌈len(dst)·bits/8⌉ bytes, half and mid len(dst) values.
func KVQDecodeChannel(dst []float32, src []byte, bits int, levels *KVQLevels, half, mid []float32) {
	n := len(dst)
	half, mid = half[:n], mid[:n]
	g := 0
	if kvqFast && n >= 8 {
		g = n / 8
		_ = src[g*bits-1]
		kvqDecodeChannelGroups(unsafe.SliceData(dst), unsafe.SliceData(src), g, bits, &levels[0], unsafe.SliceData(half), unsafe.SliceData(mid))
	}
	for j := g * 8; j < n; j++ {
		dst[j] = mid[j] + half[j]*levels[kvqCode(src, bits, j)]
	}
}

// KVQDecodeToken sets dst[j] = mid + half·levels[code j of src] for j < len(dst): a row
// with its own range (values).
func KVQDecodeToken(dst []float32, src []byte, bits int, levels *KVQLevels, half, mid float32) {
	n := len(dst)
	g := 0
	if kvqFast && n >= 8 {
		g = n / 8
		_ = src[g*bits-1]
		kvqDecodeTokenGroups(unsafe.SliceData(dst), unsafe.SliceData(src), g, bits, &levels[0], half, mid)
	}
	for j := g * 8; j < n; j++ {
		dst[j] = mid + half*levels[kvqCode(src, bits, j)]
	}
}

// KVQAxpyToken adds a·levels[code j of src] to y[j] for j < len(y).
func KVQAxpyToken(a float32, src []byte, bits int, levels *KVQLevels, y []float32) {
	n := len(y)
	g := 0
	if kvqFast && n >= 8 {
		g = n / 8
		_ = src[g*bits-1]
		kvqAxpyTokenGroups(a, unsafe.SliceData(src), g, bits, &levels[0], unsafe.SliceData(y))
	}
	for j := g * 8; j < n; j++ {
		y[j] += a * levels[kvqCode(src, bits, j)]
	}
}

// KVQRotate rotates x's first 2·len(cos) values by RoPE with the angles' cos and sin (one
// each per pair): pairs (2i, 2i+1), or (i, i+len(cos)) when neox, each (a, b) becoming
// (a·c − b·s, a·s + b·c), as RoPE.Rotate turns them (the fast path rounds once per
// multiply-add).
func KVQRotate(x, cos, sin []float32, neox bool) {
	half := len(cos)
	sin = sin[:half]
	x = x[:2*half]
	p := 0
	if kvqFast {
		if neox {
			if o := half / 8; o > 0 {
				kvqRotateNeoXGroups(&x[0], &x[half], &cos[0], &sin[0], o)
				p = 8 * o
			}
		} else if q := half / 4; q > 0 {
			kvqRotateAdjGroups(&x[0], &cos[0], &sin[0], q)
			p = 4 * q
		}
	}
	for i := p; i < half; i++ {
		c, s := cos[i], sin[i]
		if neox {
			a, b := x[i], x[i+half]
			x[i], x[i+half] = a*c-b*s, a*s+b*c
		} else {
			a, b := x[2*i], x[2*i+1]
			x[2*i], x[2*i+1] = a*c-b*s, a*s+b*c
		}
	}
}

// KVQCode returns code j of a row packed with bits-wide codes (1 to 8 bits).
func KVQCode(src []byte, bits, j int) int { return kvqCode(src, bits, j) }

// kvqCode is KVQCode: the reference unpacking.
func kvqCode(src []byte, bits, j int) int {
	at := j * bits
	v := uint16(src[at>>3])
	if at>>3+1 < len(src) {
		v |= uint16(src[at>>3+1]) << 8
	}
	return int(v>>(at&7)) & (1<<bits - 1)
}

// KVQAngles sets cos and sin to the cosines and sines of sums of angles from those of
// the parts: cos[i] = ch[i]·cl[i] − sh[i]·sl[i], sin[i] = sh[i]·cl[i] + ch[i]·sl[i], for
// i < len(cos). RoPE angles of a position p = hi + lo come from small tables of hi's and
// lo's this way.
func KVQAngles(cos, sin, ch, sh, cl, sl []float32) {
	n := len(cos)
	sin, ch, sh, cl, sl = sin[:n], ch[:n], sh[:n], cl[:n], sl[:n]
	i := 0
	if kvqFast && n >= 8 {
		o := n / 8
		kvqAnglesGroups(&cos[0], &sin[0], &ch[0], &sh[0], &cl[0], &sl[0], o)
		i = 8 * o
	}
	for ; i < n; i++ {
		cos[i] = ch[i]*cl[i] - sh[i]*sl[i]
		sin[i] = sh[i]*cl[i] + ch[i]*sl[i]
	}
}

// KVQDot returns the inner product of a and b[:len(a)], as Dot does, for rows decoded
// into buffers on the caller's stack (its fast path is called directly, so they stay
// there).
func KVQDot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s float32
	i := 0
	if kvqFast && n >= 8 {
		o := n / 8
		s = kvqDotGroups(&a[0], &b[0], o)
		i = 8 * o
	}
	for ; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// KVQDecodeRotate decodes a row with one range per channel as KVQDecodeChannel does, then
// rotates its adjacent pairs (dst[2i], dst[2i+1]), i < len(dst)/2, as KVQRotate does, by
// the angles KVQAngles composes from ch, sh, cl and sl (len(dst)/2 each): a key stored
// before RoPE, decoded at its position in one pass. len(dst) must be even.
func KVQDecodeRotate(dst []float32, src []byte, bits int, levels *KVQLevels, half, mid, ch, sh, cl, sl []float32) {
	n := len(dst)
	p := n / 2
	half, mid, ch, sh, cl, sl = half[:n], mid[:n], ch[:p], sh[:p], cl[:p], sl[:p]
	g := 0
	if kvqFast && n >= 8 {
		g = n / 8
		_ = src[g*bits-1]
		kvqDecodeRotateGroups(unsafe.SliceData(dst), unsafe.SliceData(src), g, bits, &levels[0],
			unsafe.SliceData(half), unsafe.SliceData(mid), unsafe.SliceData(ch), unsafe.SliceData(sh), unsafe.SliceData(cl), unsafe.SliceData(sl))
	}
	for j := g * 8; j < n; j += 2 {
		a := mid[j] + half[j]*levels[kvqCode(src, bits, j)]
		b := mid[j+1] + half[j+1]*levels[kvqCode(src, bits, j+1)]
		i := j / 2
		c := ch[i]*cl[i] - sh[i]*sl[i]
		s := sh[i]*cl[i] + ch[i]*sl[i]
		dst[j], dst[j+1] = a*c-b*s, a*s+b*c
	}
}
