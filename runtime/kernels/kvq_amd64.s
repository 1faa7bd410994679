//go:build amd64 && !purego

// See kvq_amd64.go for what each function computes.

#include "textflag.h"

// Per code width b (2, 3, 4): the shifts that move code t of a group of 8 to the low
// bits (t·b), 8 dwords each, at offset 32·(b−2).
DATA kvqShift<>+0(SB)/4, $0x0
DATA kvqShift<>+4(SB)/4, $0x2
DATA kvqShift<>+8(SB)/4, $0x4
DATA kvqShift<>+12(SB)/4, $0x6
DATA kvqShift<>+16(SB)/4, $0x8
DATA kvqShift<>+20(SB)/4, $0xa
DATA kvqShift<>+24(SB)/4, $0xc
DATA kvqShift<>+28(SB)/4, $0xe
DATA kvqShift<>+32(SB)/4, $0x0
DATA kvqShift<>+36(SB)/4, $0x3
DATA kvqShift<>+40(SB)/4, $0x6
DATA kvqShift<>+44(SB)/4, $0x9
DATA kvqShift<>+48(SB)/4, $0xc
DATA kvqShift<>+52(SB)/4, $0xf
DATA kvqShift<>+56(SB)/4, $0x12
DATA kvqShift<>+60(SB)/4, $0x15
DATA kvqShift<>+64(SB)/4, $0x0
DATA kvqShift<>+68(SB)/4, $0x4
DATA kvqShift<>+72(SB)/4, $0x8
DATA kvqShift<>+76(SB)/4, $0xc
DATA kvqShift<>+80(SB)/4, $0x10
DATA kvqShift<>+84(SB)/4, $0x14
DATA kvqShift<>+88(SB)/4, $0x18
DATA kvqShift<>+92(SB)/4, $0x1c
GLOBL kvqShift<>(SB), RODATA|NOPTR, $96
DATA kvqPairs<>+0(SB)/4, $0x0
DATA kvqPairs<>+4(SB)/4, $0x0
DATA kvqPairs<>+8(SB)/4, $0x1
DATA kvqPairs<>+12(SB)/4, $0x1
DATA kvqPairs<>+16(SB)/4, $0x2
DATA kvqPairs<>+20(SB)/4, $0x2
DATA kvqPairs<>+24(SB)/4, $0x3
DATA kvqPairs<>+28(SB)/4, $0x3
GLOBL kvqPairs<>(SB), RODATA|NOPTR, $32
DATA kvqSignEven<>+0(SB)/4, $0x80000000
DATA kvqSignEven<>+4(SB)/4, $0x0
DATA kvqSignEven<>+8(SB)/4, $0x80000000
DATA kvqSignEven<>+12(SB)/4, $0x0
DATA kvqSignEven<>+16(SB)/4, $0x80000000
DATA kvqSignEven<>+20(SB)/4, $0x0
DATA kvqSignEven<>+24(SB)/4, $0x80000000
DATA kvqSignEven<>+28(SB)/4, $0x0
GLOBL kvqSignEven<>(SB), RODATA|NOPTR, $32

// KVQ_CODES loads group g's 8 codes (b bytes at SI) as 8 dword indices in Y0. BX = b,
// Y13 = the shifts, Y14 = the mask 2^b−1 in every dword. Clobbers AX, DX.
#define KVQ_CODES \
	MOVWLZX (SI), AX; \
	CMPQ BX, $2; \
	JEQ 4(PC); \
	MOVBLZX 2(SI), DX; \
	SHLL $16, DX; \
	ORL DX, AX; \
	CMPQ BX, $4; \
	JNE 4(PC); \
	MOVBLZX 3(SI), DX; \
	SHLL $24, DX; \
	ORL DX, AX; \
	VMOVD AX, X0; \
	VPBROADCASTD X0, Y0; \
	VPSRLVD Y13, Y0, Y0; \
	VPAND Y14, Y0, Y0

// KVQ_LEVELS sets Y1 to the levels of the indices in Y0: Y11 holds levels 0-7, Y12
// levels 8-15. Clobbers Y2, Y3.
#define KVQ_LEVELS \
	VPERMPS Y11, Y0, Y1; \
	VPERMPS Y12, Y0, Y2; \
	VPSLLD $28, Y0, Y3; \
	VBLENDVPS Y3, Y2, Y1, Y1

// KVQ_SETUP loads the shifts and mask for b = BX and the 16 levels at R8.
#define KVQ_SETUP \
	LEAQ kvqShift<>(SB), AX; \
	MOVQ BX, DX; \
	SUBQ $2, DX; \
	SHLQ $5, DX; \
	VMOVDQU (AX)(DX*1), Y13; \
	MOVL $1, AX; \
	MOVQ BX, CX; \
	SHLL CX, AX; \
	DECL AX; \
	VMOVD AX, X14; \
	VPBROADCASTD X14, Y14; \
	VMOVUPS (R8), Y11; \
	VMOVUPS 32(R8), Y12

// func kvqDecodeChannelGroups(dst *float32, src *byte, groups, bits int, levels, half, mid *float32)
TEXT ·kvqDecodeChannelGroups(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ groups+16(FP), R9
	MOVQ bits+24(FP), BX
	MOVQ levels+32(FP), R8
	MOVQ half+40(FP), R10
	MOVQ mid+48(FP), R11
	KVQ_SETUP
	TESTQ R9, R9
	JEQ cdone
cloop:
	KVQ_CODES
	KVQ_LEVELS
	VMOVUPS (R10), Y4
	VFMADD213PS (R11), Y4, Y1
	VMOVUPS Y1, (DI)
	ADDQ BX, SI
	ADDQ $32, DI
	ADDQ $32, R10
	ADDQ $32, R11
	DECQ R9
	JNE cloop
cdone:
	VZEROUPPER
	RET

// func kvqDecodeTokenGroups(dst *float32, src *byte, groups, bits int, levels *float32, half, mid float32)
TEXT ·kvqDecodeTokenGroups(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ groups+16(FP), R9
	MOVQ bits+24(FP), BX
	MOVQ levels+32(FP), R8
	VBROADCASTSS half+40(FP), Y4
	VBROADCASTSS mid+44(FP), Y5
	KVQ_SETUP
	TESTQ R9, R9
	JEQ tdone
tloop:
	KVQ_CODES
	KVQ_LEVELS
	VFMADD213PS Y5, Y4, Y1
	VMOVUPS Y1, (DI)
	ADDQ BX, SI
	ADDQ $32, DI
	DECQ R9
	JNE tloop
tdone:
	VZEROUPPER
	RET

// func kvqAxpyTokenGroups(a float32, src *byte, groups, bits int, levels *float32, y *float32)
TEXT ·kvqAxpyTokenGroups(SB), NOSPLIT, $0-48
	VBROADCASTSS a+0(FP), Y4
	MOVQ src+8(FP), SI
	MOVQ groups+16(FP), R9
	MOVQ bits+24(FP), BX
	MOVQ levels+32(FP), R8
	MOVQ y+40(FP), DI
	KVQ_SETUP
	TESTQ R9, R9
	JEQ adone
aloop:
	KVQ_CODES
	KVQ_LEVELS
	VFMADD213PS (DI), Y4, Y1
	VMOVUPS Y1, (DI)
	ADDQ BX, SI
	ADDQ $32, DI
	DECQ R9
	JNE aloop
adone:
	VZEROUPPER
	RET

// func kvqRotateAdjGroups(x, cos, sin *float32, quads int)
TEXT ·kvqRotateAdjGroups(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), DI
	MOVQ cos+8(FP), R8
	MOVQ sin+16(FP), R9
	MOVQ quads+24(FP), CX
	VMOVDQU kvqPairs<>(SB), Y13
	VMOVUPS kvqSignEven<>(SB), Y14
	TESTQ CX, CX
	JEQ rdone
rloop:
	VMOVUPS (R8), X6
	VPERMPS Y6, Y13, Y6
	VMOVUPS (R9), X7
	VPERMPS Y7, Y13, Y7
	VXORPS Y14, Y7, Y7
	VMOVUPS (DI), Y0
	VPERMILPS $0xB1, Y0, Y1
	VMULPS Y6, Y0, Y0
	VFMADD231PS Y7, Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $16, R8
	ADDQ $16, R9
	DECQ CX
	JNE rloop
rdone:
	VZEROUPPER
	RET

// func kvqRotateNeoXGroups(lo, hi, cos, sin *float32, octs int)
TEXT ·kvqRotateNeoXGroups(SB), NOSPLIT, $0-40
	MOVQ lo+0(FP), DI
	MOVQ hi+8(FP), SI
	MOVQ cos+16(FP), R8
	MOVQ sin+24(FP), R9
	MOVQ octs+32(FP), CX
	TESTQ CX, CX
	JEQ ndone
nloop:
	VMOVUPS (R8), Y6
	VMOVUPS (R9), Y7
	VMOVUPS (DI), Y0
	VMOVUPS (SI), Y1
	VMULPS Y6, Y0, Y2
	VFNMADD231PS Y7, Y1, Y2
	VMULPS Y7, Y0, Y3
	VFMADD231PS Y6, Y1, Y3
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, (SI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	DECQ CX
	JNE nloop
ndone:
	VZEROUPPER
	RET

// func kvqAnglesGroups(cos, sin, ch, sh, cl, sl *float32, octs int)
TEXT ·kvqAnglesGroups(SB), NOSPLIT, $0-56
	MOVQ cos+0(FP), DI
	MOVQ sin+8(FP), SI
	MOVQ ch+16(FP), R8
	MOVQ sh+24(FP), R9
	MOVQ cl+32(FP), R10
	MOVQ sl+40(FP), R11
	MOVQ octs+48(FP), CX
	TESTQ CX, CX
	JEQ gdone
gloop:
	VMOVUPS (R8), Y0
	VMOVUPS (R9), Y1
	VMOVUPS (R10), Y2
	VMOVUPS (R11), Y3
	VMULPS Y2, Y0, Y4
	VFNMADD231PS Y3, Y1, Y4
	VMULPS Y2, Y1, Y5
	VFMADD231PS Y3, Y0, Y5
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, (SI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	ADDQ $32, R11
	DECQ CX
	JNE gloop
gdone:
	VZEROUPPER
	RET

// func kvqDotGroups(a, b *float32, octs int) float32
TEXT ·kvqDotGroups(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ octs+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ CX, CX
	JEQ ddone
dloop:
	VMOVUPS (SI), Y2
	VFMADD231PS (DI), Y2, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNE dloop
ddone:
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func kvqDecodeRotateGroups(dst *float32, src *byte, groups, bits int, levels, half, mid, ch, sh, cl, sl *float32)
TEXT ·kvqDecodeRotateGroups(SB), NOSPLIT, $0-88
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ groups+16(FP), R9
	MOVQ bits+24(FP), BX
	MOVQ levels+32(FP), R8
	MOVQ half+40(FP), R10
	MOVQ mid+48(FP), R11
	KVQ_SETUP
	// After the setup, R8 (the levels) and CX are free: they and R12, R13 walk the angle
	// tables (R14 and R15 are left alone).
	MOVQ ch+56(FP), R12
	MOVQ sh+64(FP), R13
	MOVQ cl+72(FP), CX
	MOVQ sl+80(FP), R8
	VMOVDQU kvqPairs<>(SB), Y9
	VMOVUPS kvqSignEven<>(SB), Y10
	TESTQ R9, R9
	JEQ xdone
xloop:
	KVQ_CODES
	KVQ_LEVELS
	VMOVUPS (R10), Y4
	VFMADD213PS (R11), Y4, Y1
	// The angles of the group's 4 pairs: c = ch·cl − sh·sl, s = sh·cl + ch·sl.
	VMOVUPS (R12), X5
	VMOVUPS (R13), X6
	VMOVUPS (CX), X7
	VMOVUPS (R8), X8
	VMULPS X7, X5, X2
	VFNMADD231PS X8, X6, X2
	VMULPS X7, X6, X3
	VFMADD231PS X8, X5, X3
	VPERMPS Y2, Y9, Y2
	VPERMPS Y3, Y9, Y3
	VXORPS Y10, Y3, Y3
	// (a, b) → (a·c − b·s, a·s + b·c).
	VPERMILPS $0xB1, Y1, Y4
	VMULPS Y2, Y1, Y1
	VFMADD231PS Y3, Y4, Y1
	VMOVUPS Y1, (DI)
	ADDQ BX, SI
	ADDQ $32, DI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $16, R12
	ADDQ $16, R13
	ADDQ $16, CX
	ADDQ $16, R8
	DECQ R9
	JNE xloop
xdone:
	VZEROUPPER
	RET

// KVQ_GROUP_LEVELS sets Y1 to the levels of the 8 codes at SI (4 bytes loaded: the
// group's bits bytes and what follows), Y11 and Y12 holding periodic levels 0-7 and
// 8-15, Y13 the shifts, BX = bits. Codes of 2 and 3 bits index Y11 by their low 3 bits
// unmasked (the levels repeat); 4-bit codes pick Y12 by bit 3. Clobbers Y0, Y2, Y3.
#define KVQ_GROUP_LEVELS(skip) \
	VPBROADCASTD (SI), Y0; \
	VPSRLVD Y13, Y0, Y0; \
	VPERMPS Y11, Y0, Y1; \
	CMPQ BX, $4; \
	JNE skip; \
	VPERMPS Y12, Y0, Y2; \
	VPSLLD $28, Y0, Y3; \
	VBLENDVPS Y3, Y2, Y1, Y1; \
skip:

// func kvqScoreKeysRows(dst *float32, dstride int, q *float32, nq int, src *byte, n, dim, bits int, levels, ranges *float32, pos *int32, hi, lo *float32)
TEXT ·kvqScoreKeysRows(SB), NOSPLIT, $0-104
	MOVQ dst+0(FP), DI
	MOVQ q+16(FP), R12
	MOVQ nq+24(FP), DX
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), CX
	MOVQ bits+56(FP), BX
	MOVQ levels+64(FP), R8
	LEAQ kvqShift<>(SB), AX
	MOVQ BX, R9
	SUBQ $2, R9
	SHLQ $5, R9
	VMOVDQU (AX)(R9*1), Y13
	VMOVUPS (R8), Y11
	VMOVUPS 32(R8), Y12
	MOVQ ranges+72(FP), R11
	MOVQ pos+80(FP), R8
	TESTQ CX, CX
	JEQ sdone

srow:
	// R9 and R10: the angle rows of position p, p/64 of hi and p%64 of lo (8·dim bytes).
	MOVLQSX (R8), AX
	MOVQ AX, R10
	SHRQ $6, AX
	ANDQ $63, R10
	MOVQ dim+48(FP), R9
	SHLQ $3, R9
	IMULQ R9, AX
	IMULQ R9, R10
	MOVQ hi+88(FP), R9
	ADDQ AX, R9
	ADDQ lo+96(FP), R10
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	XORQ R13, R13

sgroup:
	// R13 = 32·g: group g's ranges and angles at 64·g, its query values at 128·g.
	KVQ_GROUP_LEVELS(s4)
	VMOVUPS (R11)(R13*2), Y4
	VFMADD213PS 32(R11)(R13*2), Y4, Y1
	// The angles: c = ch·cl − sh·sl, ±s = ±sh·cl + ch·±sl (the sines' even lanes negated).
	VMOVUPS (R9)(R13*2), Y2
	VMOVUPS 32(R9)(R13*2), Y3
	VMULPS (R10)(R13*2), Y2, Y9
	VFNMADD231PS 32(R10)(R13*2), Y3, Y9
	VMULPS (R10)(R13*2), Y3, Y10
	VFMADD231PS 32(R10)(R13*2), Y2, Y10
	// (a, b) → (a·c − b·s, a·s + b·c).
	VPERMILPS $0xB1, Y1, Y4
	VMULPS Y9, Y1, Y1
	VFMADD231PS Y10, Y4, Y1
	VFMADD231PS (R12)(R13*4), Y1, Y5
	CMPQ DX, $1
	JEQ snext
	VFMADD231PS 32(R12)(R13*4), Y1, Y6
	CMPQ DX, $2
	JEQ snext
	VFMADD231PS 64(R12)(R13*4), Y1, Y7
	CMPQ DX, $3
	JEQ snext
	VFMADD231PS 96(R12)(R13*4), Y1, Y8

snext:
	ADDQ BX, SI
	ADDQ $32, R13
	MOVQ dim+48(FP), AX
	SHLQ $2, AX
	CMPQ R13, AX
	JNE sgroup
	// X5 = the 4 sums, each reduced by the same tree whatever the others.
	VHADDPS Y6, Y5, Y5
	VHADDPS Y8, Y7, Y7
	VHADDPS Y7, Y5, Y5
	VEXTRACTF128 $1, Y5, X6
	VADDPS X6, X5, X5
	VMOVSS X5, (DI)
	CMPQ DX, $1
	JEQ sstored
	MOVQ dstride+8(FP), AX
	SHLQ $2, AX
	VEXTRACTPS $1, X5, (DI)(AX*1)
	CMPQ DX, $2
	JEQ sstored
	VEXTRACTPS $2, X5, (DI)(AX*2)
	CMPQ DX, $3
	JEQ sstored
	LEAQ (AX)(AX*2), AX
	VEXTRACTPS $3, X5, (DI)(AX*1)

sstored:
	ADDQ $4, DI
	ADDQ $4, R8
	DECQ CX
	JNE srow

sdone:
	VZEROUPPER
	RET

// func kvqAccumTokenRows(out *float32, ostride int, a *float32, nq int, src *byte, n, dim, bits int, levels *float32)
TEXT ·kvqAccumTokenRows(SB), NOSPLIT, $0-72
	MOVQ out+0(FP), DI
	MOVQ ostride+8(FP), AX
	SHLQ $2, AX
	LEAQ (AX)(AX*2), R13
	MOVQ nq+24(FP), DX
	MOVQ bits+56(FP), BX
	MOVQ levels+64(FP), R8
	LEAQ kvqShift<>(SB), R9
	MOVQ BX, R10
	SUBQ $2, R10
	SHLQ $5, R10
	VMOVDQU (R9)(R10*1), Y13
	VMOVUPS (R8), Y11
	VMOVUPS 32(R8), Y12
	MOVQ src+32(FP), R8
	MOVQ dim+48(FP), R12
	SHRQ $3, R12
	MOVQ dim+48(FP), R11
	IMULQ BX, R11
	SHRQ $3, R11

agroup:
	// Group g (R8 = its codes in the first row, DI = its values of vector 0): every
	// vector's 8 sums stay in Y5-Y8 while the rows go by.
	VMOVUPS (DI), Y5
	CMPQ DX, $1
	JEQ aloaded
	VMOVUPS (DI)(AX*1), Y6
	CMPQ DX, $2
	JEQ aloaded
	VMOVUPS (DI)(AX*2), Y7
	CMPQ DX, $3
	JEQ aloaded
	VMOVUPS (DI)(R13*1), Y8

aloaded:
	MOVQ R8, SI
	MOVQ a+16(FP), R10
	MOVQ n+40(FP), CX

arow:
	KVQ_GROUP_LEVELS(a4)
	VBROADCASTSS (R10), Y2
	VFMADD231PS Y2, Y1, Y5
	CMPQ DX, $1
	JEQ anext
	VBROADCASTSS 4(R10), Y3
	VFMADD231PS Y3, Y1, Y6
	CMPQ DX, $2
	JEQ anext
	VBROADCASTSS 8(R10), Y4
	VFMADD231PS Y4, Y1, Y7
	CMPQ DX, $3
	JEQ anext
	VBROADCASTSS 12(R10), Y9
	VFMADD231PS Y9, Y1, Y8

anext:
	ADDQ R11, SI
	ADDQ $16, R10
	DECQ CX
	JNE arow
	VMOVUPS Y5, (DI)
	CMPQ DX, $1
	JEQ astored
	VMOVUPS Y6, (DI)(AX*1)
	CMPQ DX, $2
	JEQ astored
	VMOVUPS Y7, (DI)(AX*2)
	CMPQ DX, $3
	JEQ astored
	VMOVUPS Y8, (DI)(R13*1)

astored:
	ADDQ $32, DI
	ADDQ BX, R8
	DECQ R12
	JNE agroup
	VZEROUPPER
	RET

