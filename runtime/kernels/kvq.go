package kernels

// Kernels of quantized KV rows (package kvquant): codes of 2, 3 or 4 bits packed
// little-endian (code j at bits j·b .. j·b+b−1 of the row, from the least significant
// bit of its first byte), decoded through a table. Each works on one row; groups of 8
// codes (b bytes) are unpacked with one load.

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

// kvqGroup loads the 8 codes of group g (bits bytes) as one word.
func kvqGroup(src []byte, bits, g int) uint32 {
	b := src[g*bits : g*bits+bits]
	switch bits {
	case 2:
		return uint32(b[0]) | uint32(b[1])<<8
	case 3:
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
	default:
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
}

// KVQDecodeLUT sets dst[j] = lut[j<<bits | code j of src] for j < len(dst): codes decoded
// through a per-channel table of 2^bits entries per channel (keys with per-channel ranges).
// bits is 2, 3 or 4; src holds ⌈len(dst)·bits/8⌉ bytes and lut len(dst)<<bits values.
func KVQDecodeLUT(dst []float32, src []byte, bits int, lut []float32) {
	n := len(dst)
	lut = lut[:n<<bits]
	mask := uint32(1)<<bits - 1
	g := 0
	for ; g+1 <= n/8; g++ {
		v := kvqGroup(src, bits, g)
		d := dst[g*8 : g*8+8 : g*8+8]
		l := lut[g*8<<bits : (g*8+8)<<bits]
		s := uint(bits)
		d[0] = l[v&mask]
		d[1] = l[1<<s|v>>s&mask]
		d[2] = l[2<<s|v>>(2*s)&mask]
		d[3] = l[3<<s|v>>(3*s)&mask]
		d[4] = l[4<<s|v>>(4*s)&mask]
		d[5] = l[5<<s|v>>(5*s)&mask]
		d[6] = l[6<<s|v>>(6*s)&mask]
		d[7] = l[7<<s|v>>(7*s)&mask]
	}
	for j := g * 8; j < n; j++ {
		dst[j] = lut[j<<bits|kvqCode(src, bits, j)]
	}
}

// KVQAxpyLevels adds a·levels[code j of src] to y[j] for j < len(y): a weighted row of
// values with a per-row range, its offset left to the caller. bits is 2, 3 or 4; levels has
// 2^bits entries.
func KVQAxpyLevels(a float32, src []byte, bits int, levels []float32, y []float32) {
	n := len(y)
	var t [16]float32
	for i, l := range levels[:1<<bits] {
		t[i] = a * l
	}
	mask := uint32(1)<<bits - 1
	g := 0
	for ; g+1 <= n/8; g++ {
		v := kvqGroup(src, bits, g)
		d := y[g*8 : g*8+8 : g*8+8]
		s := uint(bits)
		d[0] += t[v&mask]
		d[1] += t[v>>s&mask]
		d[2] += t[v>>(2*s)&mask]
		d[3] += t[v>>(3*s)&mask]
		d[4] += t[v>>(4*s)&mask]
		d[5] += t[v>>(5*s)&mask]
		d[6] += t[v>>(6*s)&mask]
		d[7] += t[v>>(7*s)&mask]
	}
	for j := g * 8; j < n; j++ {
		y[j] += t[kvqCode(src, bits, j)]
	}
}

// KVQRopeDot returns q · R(k): k rotated by RoPE with the angles' cos and sin (one each per
// pair) over its first 2·len(cos) values, the rest as is, without changing k. Pairs are
// (2i, 2i+1), or (i, i+len(cos)) when neox, each (a, b) becoming (a·c − b·s, a·s + b·c), as
// RoPE.Rotate turns them.
func KVQRopeDot(q, k, cos, sin []float32, neox bool) float32 {
	half := len(cos)
	q, k, sin = q[:len(k)], k[:len(k)], sin[:half]
	var s0, s1 float32
	if neox {
		qa, qb := q[:half], q[half:2*half]
		ka, kb := k[:half], k[half:2*half]
		for i, c := range cos {
			a, b, s := ka[i], kb[i], sin[i]
			s0 += c * (a*qa[i] + b*qb[i])
			s1 += s * (a*qb[i] - b*qa[i])
		}
	} else {
		for i, c := range cos {
			a, b, s := k[2*i], k[2*i+1], sin[i]
			x, y := q[2*i], q[2*i+1]
			s0 += c * (a*x + b*y)
			s1 += s * (a*y - b*x)
		}
	}
	if r := 2 * half; r < len(k) {
		s0 += Dot(q[r:], k[r:])
	}
	return s0 + s1
}
