//go:build amd64 && !purego

#include "textflag.h"

// func addExpNeg512(sum, top *float64, x *float32, n int, z float64, c *[12]float64)
//
// For i < n (a multiple of 8), 8 at a time: a = (float64(x[i]) − z) − top[i], then
// ExpNeg(a) step for step as the Go code computes it (every product and sum rounded on
// its own), added to sum[i] where top[i] ≠ −Inf and a > −708.
TEXT ·addExpNeg512(SB), NOSPLIT, $0-48
	MOVQ sum+0(FP), DI
	MOVQ top+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSD z+32(FP), Z20
	MOVQ c+40(FP), R8
	VBROADCASTSD 0(R8), Z21  // log2e
	VBROADCASTSD 8(R8), Z22  // 0.5
	VBROADCASTSD 16(R8), Z23 // ln2 high
	VBROADCASTSD 24(R8), Z24 // ln2 low
	VBROADCASTSD 32(R8), Z25 // 1/720
	VBROADCASTSD 40(R8), Z26 // 1/120
	VBROADCASTSD 48(R8), Z27 // 1/24
	VBROADCASTSD 56(R8), Z28 // 1/6
	VBROADCASTSD 64(R8), Z29 // 1/2
	VBROADCASTSD 72(R8), Z30 // 1
	VBROADCASTSD 80(R8), Z31 // −708
	VBROADCASTSD 88(R8), Z18 // −Inf
	MOVQ $1023, AX
	VPBROADCASTQ AX, Z19
	XORQ AX, AX

loop:
	VCVTPS2PD (DX)(AX*4), Z0
	VSUBPD Z20, Z0, Z0
	VMOVUPD (SI)(AX*8), Z1
	VSUBPD Z1, Z0, Z0        // a
	VCMPPD $4, Z18, Z1, K1   // top ≠ −Inf (NaN counts as unequal)
	VCMPPD $0x1E, Z31, Z0, K2 // a > −708, false for NaN
	KANDB K1, K2, K3
	VMULPD Z21, Z0, Z2
	VSUBPD Z22, Z2, Z2
	VCVTTPD2QQ Z2, Z3        // int64(a·log2e − 0.5)
	VCVTQQ2PD Z3, Z2         // k
	VMULPD Z23, Z2, Z4
	VSUBPD Z4, Z0, Z4        // a − k·ln2hi
	VMULPD Z24, Z2, Z5
	VSUBPD Z5, Z4, Z4        // r
	VMULPD Z25, Z4, Z6       // t = r/720
	VADDPD Z26, Z6, Z6
	VMULPD Z4, Z6, Z6        // t = r(1/120 + t)
	VADDPD Z27, Z6, Z6
	VMULPD Z4, Z6, Z6
	VADDPD Z28, Z6, Z6
	VMULPD Z4, Z6, Z6
	VADDPD Z29, Z6, Z6
	VMULPD Z4, Z6, Z6
	VADDPD Z30, Z6, Z6
	VMULPD Z4, Z6, Z6
	VADDPD Z30, Z6, Z6       // 1 + t
	VPADDQ Z19, Z3, Z3
	VPSLLQ $52, Z3, Z3       // 2^k
	VMULPD Z3, Z6, Z6
	VMOVUPD (DI)(AX*8), Z7
	VADDPD Z6, Z7, K3, Z7
	VMOVUPD Z7, (DI)(AX*8)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT loop
	VZEROUPPER
	RET
