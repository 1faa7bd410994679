package kvquant

import "squeeze/runtime/kernels"

// PackedLen is the number of bytes n codes of bits bits take: ⌈n·bits/8⌉.
func PackedLen(n, bits int) int { return (n*bits + 7) / 8 }

// Pack writes codes (each below 2^bits, bits in [1, 8]) to dst as one little-endian bit
// stream: code i occupies bits i·bits .. i·bits+bits−1, counting from the least
// significant bit of dst[0]; a 3-bit code may straddle two bytes. The bits past the last
// code of the last byte are zero. dst must hold PackedLen(len(codes), bits) bytes.
func Pack(dst []byte, codes []uint8, bits int) {
	dst = dst[:PackedLen(len(codes), bits)]
	clear(dst)
	mask := uint8(1)<<bits - 1
	for i, c := range codes {
		at := i * bits
		v := uint16(c&mask) << (at & 7)
		dst[at>>3] |= uint8(v)
		if hi := uint8(v >> 8); hi != 0 {
			dst[at>>3+1] |= hi
		}
	}
}

// Unpack reads len(dst) codes of bits bits (in [1, 8]) from src, the inverse of Pack.
// src must hold PackedLen(len(dst), bits) bytes.
func Unpack(dst []uint8, src []byte, bits int) {
	src = src[:PackedLen(len(dst), bits)]
	switch bits {
	case 2:
		unpack2(dst, src)
	case 3:
		unpack3(dst, src)
	case 4:
		unpack4(dst, src)
	default:
		unpackRef(dst, src, bits)
	}
}

// unpackRef is the code-by-code reference of Unpack for any width (kernels.KVQCode).
func unpackRef(dst []uint8, src []byte, bits int) {
	for i := range dst {
		dst[i] = uint8(kernels.KVQCode(src, bits, i))
	}
}

func unpack4(dst []uint8, src []byte) {
	n := len(dst) / 2
	for i, b := range src[:n] {
		dst[2*i] = b & 15
		dst[2*i+1] = b >> 4
	}
	if len(dst)%2 == 1 {
		dst[len(dst)-1] = src[n] & 15
	}
}

func unpack2(dst []uint8, src []byte) {
	n := len(dst) / 4
	for i, b := range src[:n] {
		d := dst[4*i : 4*i+4]
		d[0], d[1], d[2], d[3] = b&3, b>>2&3, b>>4&3, b>>6
	}
	unpackRef(dst[4*n:], src[n:], 2)
}

// unpack3 reads eight codes from every three bytes.
func unpack3(dst []uint8, src []byte) {
	n := len(dst) / 8
	for i := range n {
		s := src[3*i : 3*i+3]
		v := uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16
		d := dst[8*i : 8*i+8]
		d[0], d[1], d[2], d[3] = uint8(v&7), uint8(v>>3&7), uint8(v>>6&7), uint8(v>>9&7)
		d[4], d[5], d[6], d[7] = uint8(v>>12&7), uint8(v>>15&7), uint8(v>>18&7), uint8(v>>21&7)
	}
	unpackRef(dst[8*n:], src[3*n:], 3)
}
