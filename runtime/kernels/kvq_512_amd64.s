//go:build amd64 && !purego

// The AVX-512 VBMI multi-row kernels; see kvq_amd64.go for what each computes.

#include "textflag.h"

// The VPMULTISHIFTQB controls that move code t of 16 (t·b bits into a qword) to the low
// byte of dword t, per code width b (2, 3, 4), 64 bytes each at offset 64·(b−2).
DATA ·kvqMultiShift+0(SB)/8, $0x0000000200000000
DATA ·kvqMultiShift+8(SB)/8, $0x0000000600000004
DATA ·kvqMultiShift+16(SB)/8, $0x0000000a00000008
DATA ·kvqMultiShift+24(SB)/8, $0x0000000e0000000c
DATA ·kvqMultiShift+32(SB)/8, $0x0000001200000010
DATA ·kvqMultiShift+40(SB)/8, $0x0000001600000014
DATA ·kvqMultiShift+48(SB)/8, $0x0000001a00000018
DATA ·kvqMultiShift+56(SB)/8, $0x0000001e0000001c
DATA ·kvqMultiShift+64(SB)/8, $0x0000000300000000
DATA ·kvqMultiShift+72(SB)/8, $0x0000000900000006
DATA ·kvqMultiShift+80(SB)/8, $0x0000000f0000000c
DATA ·kvqMultiShift+88(SB)/8, $0x0000001500000012
DATA ·kvqMultiShift+96(SB)/8, $0x0000001b00000018
DATA ·kvqMultiShift+104(SB)/8, $0x000000210000001e
DATA ·kvqMultiShift+112(SB)/8, $0x0000002700000024
DATA ·kvqMultiShift+120(SB)/8, $0x0000002d0000002a
DATA ·kvqMultiShift+128(SB)/8, $0x0000000400000000
DATA ·kvqMultiShift+136(SB)/8, $0x0000000c00000008
DATA ·kvqMultiShift+144(SB)/8, $0x0000001400000010
DATA ·kvqMultiShift+152(SB)/8, $0x0000001c00000018
DATA ·kvqMultiShift+160(SB)/8, $0x0000002400000020
DATA ·kvqMultiShift+168(SB)/8, $0x0000002c00000028
DATA ·kvqMultiShift+176(SB)/8, $0x0000003400000030
DATA ·kvqMultiShift+184(SB)/8, $0x0000003c00000038
GLOBL ·kvqMultiShift(SB), RODATA|NOPTR, $192

// KVQ_LEVELS16(off, dst): dst = the levels of the 16 codes at off(SI) (8 bytes read),
// Z13 the controls for the code width, Z11 the 16 periodic levels.
#define KVQ_LEVELS16(off, dst) \
	VPMULTISHIFTQB.BCST off(SI), Z13, dst; \
	VPERMPS Z11, dst, dst

// KVQ_DECODE64 sets Z0-Z3 to the levels of the 64 codes at SI: BX = the bytes of 16
// codes, R9 = those of 48, Z13 the controls, Z11 the periodic levels.
#define KVQ_DECODE64 \
	VPMULTISHIFTQB.BCST (SI), Z13, Z0; \
	VPERMPS Z11, Z0, Z0; \
	VPMULTISHIFTQB.BCST (SI)(BX*1), Z13, Z1; \
	VPERMPS Z11, Z1, Z1; \
	VPMULTISHIFTQB.BCST (SI)(BX*2), Z13, Z2; \
	VPERMPS Z11, Z2, Z2; \
	VPMULTISHIFTQB.BCST (SI)(R9*1), Z13, Z3; \
	VPERMPS Z11, Z3, Z3

// KVQ_ADD64(m, s0, s1, s2, s3): the sums s0-s3 += the levels Z0-Z3 times the weight
// at m.
#define KVQ_ADD64(m, s0, s1, s2, s3) \
	VFMADD231PS.BCST m, Z0, s0; \
	VFMADD231PS.BCST m, Z1, s1; \
	VFMADD231PS.BCST m, Z2, s2; \
	VFMADD231PS.BCST m, Z3, s3

// KVQ_LOAD64(o, s0, s1, s2, s3) loads 64 sums from (SI) and adds the offset o to each.
#define KVQ_LOAD64(o, s0, s1, s2, s3) \
	VADDPS (SI), o, s0; \
	VADDPS 64(SI), o, s1; \
	VADDPS 128(SI), o, s2; \
	VADDPS 192(SI), o, s3

// KVQ_STORE64(s0, s1, s2, s3) stores 64 sums at (SI).
#define KVQ_STORE64(s0, s1, s2, s3) \
	VMOVUPS s0, (SI); \
	VMOVUPS s1, 64(SI); \
	VMOVUPS s2, 128(SI); \
	VMOVUPS s3, 192(SI)

// func kvqAccumTokenRows512(out *float32, ostride int, a *float32, astride, nq int, off *float32, src *byte, n, dim, bits int, levels *float32)
TEXT ·kvqAccumTokenRows512(SB), NOSPLIT, $0-88
	MOVQ out+0(FP), DI
	MOVQ bits+72(FP), BX
	MOVQ levels+80(FP), R8
	LEAQ ·kvqMultiShift(SB), R9
	MOVQ BX, R10
	SUBQ $2, R10
	SHLQ $6, R10
	VMOVDQU32 (R9)(R10*1), Z13
	VMOVUPS (R8), Z11
	MOVQ off+40(FP), R8
	VBROADCASTSS 0(R8), Z4
	VBROADCASTSS 4(R8), Z5
	VBROADCASTSS 8(R8), Z6
	VBROADCASTSS 12(R8), Z7
	MOVQ src+48(FP), R8
	MOVQ dim+64(FP), R12
	SHRQ $6, R12
	MOVQ dim+64(FP), R11
	IMULQ BX, R11
	SHRQ $3, R11
	// BX = the bytes of 16 codes, R9 = those of 48; AX and R13 = 1 and 3 output strides.
	SHLQ $1, BX
	LEAQ (BX)(BX*2), R9
	MOVQ ostride+8(FP), AX
	SHLQ $2, AX
	LEAQ (AX)(AX*2), R13
	MOVQ nq+32(FP), DX
	// R14 and R15 = the bytes of 1 and 3 strides of a.
	MOVQ astride+24(FP), R14
	SHLQ $2, R14
	LEAQ (R14)(R14*2), R15

zblock:
	// Block c of 64 values (R8 = its codes in the first row, DI = its values of vector
	// 0): Z16-Z19 vector 0, Z20-Z23 vector 1, Z24-Z27 vector 2, Z28-Z31 vector 3, each
	// with its offset added once; one loop per number of vectors.
	MOVQ a+16(FP), R10
	MOVQ n+56(FP), CX
	MOVQ DI, SI
	KVQ_LOAD64(Z4, Z16, Z17, Z18, Z19)
	CMPQ DX, $1
	JEQ zrow1s
	LEAQ (DI)(AX*1), SI
	KVQ_LOAD64(Z5, Z20, Z21, Z22, Z23)
	CMPQ DX, $2
	JEQ zrow2s
	LEAQ (DI)(AX*2), SI
	KVQ_LOAD64(Z6, Z24, Z25, Z26, Z27)
	CMPQ DX, $3
	JEQ zrow3s
	LEAQ (DI)(R13*1), SI
	KVQ_LOAD64(Z7, Z28, Z29, Z30, Z31)
	MOVQ R8, SI

zrow4:
	KVQ_DECODE64
	KVQ_ADD64((R10), Z16, Z17, Z18, Z19)
	KVQ_ADD64((R10)(R14*1), Z20, Z21, Z22, Z23)
	KVQ_ADD64((R10)(R14*2), Z24, Z25, Z26, Z27)
	KVQ_ADD64((R10)(R15*1), Z28, Z29, Z30, Z31)
	ADDQ R11, SI
	ADDQ $4, R10
	DECQ CX
	JNE zrow4
	LEAQ (DI)(R13*1), SI
	KVQ_STORE64(Z28, Z29, Z30, Z31)
	JMP zstore3

zrow3s:
	MOVQ R8, SI

zrow3:
	KVQ_DECODE64
	KVQ_ADD64((R10), Z16, Z17, Z18, Z19)
	KVQ_ADD64((R10)(R14*1), Z20, Z21, Z22, Z23)
	KVQ_ADD64((R10)(R14*2), Z24, Z25, Z26, Z27)
	ADDQ R11, SI
	ADDQ $4, R10
	DECQ CX
	JNE zrow3

zstore3:
	LEAQ (DI)(AX*2), SI
	KVQ_STORE64(Z24, Z25, Z26, Z27)
	JMP zstore2

zrow2s:
	MOVQ R8, SI

zrow2:
	KVQ_DECODE64
	KVQ_ADD64((R10), Z16, Z17, Z18, Z19)
	KVQ_ADD64((R10)(R14*1), Z20, Z21, Z22, Z23)
	ADDQ R11, SI
	ADDQ $4, R10
	DECQ CX
	JNE zrow2

zstore2:
	LEAQ (DI)(AX*1), SI
	KVQ_STORE64(Z20, Z21, Z22, Z23)
	JMP zstore1

zrow1s:
	MOVQ R8, SI

zrow1:
	KVQ_DECODE64
	KVQ_ADD64((R10), Z16, Z17, Z18, Z19)
	ADDQ R11, SI
	ADDQ $4, R10
	DECQ CX
	JNE zrow1

zstore1:
	MOVQ DI, SI
	KVQ_STORE64(Z16, Z17, Z18, Z19)
	ADDQ $256, DI
	LEAQ (R8)(BX*4), R8
	DECQ R12
	JNE zblock
	VZEROUPPER
	RET

// func kvqScaleWeights512(a *float32, astride int, w *float32, wstride, nq int, half, mid *float32, n int, off *float32)
TEXT ·kvqScaleWeights512(SB), NOSPLIT, $0-72
	MOVQ a+0(FP), DI
	MOVQ astride+8(FP), R13
	SHLQ $2, R13
	MOVQ w+16(FP), SI
	MOVQ wstride+24(FP), R8
	SHLQ $2, R8
	MOVQ nq+32(FP), DX
	MOVQ off+64(FP), R12

wvec:
	// Vector v: a[i] = w[i]·half[i] 16 at a time (the last ones masked), Σ w·mid in Z1.
	MOVQ half+40(FP), R10
	MOVQ mid+48(FP), R11
	MOVQ n+56(FP), CX
	XORQ AX, AX
	VXORPS Z1, Z1, Z1

wrow:
	MOVQ CX, BX
	SUBQ AX, BX
	CMPQ BX, $16
	JGE wfull
	// K1 = the low CX−AX lanes.
	MOVL $1, R9
	SHLXL BX, R9, R9
	DECL R9
	KMOVW R9, K1
	JMP wload

wfull:
	KXNORW K1, K1, K1

wload:
	VMOVUPS.Z (SI)(AX*4), K1, Z0
	VMULPS.Z (R10)(AX*4), Z0, K1, Z2
	VMOVUPS Z2, (DI)(AX*4)
	VMOVUPS.Z (R11)(AX*4), K1, Z3
	VFMADD231PS Z3, Z0, Z1
	ADDQ $16, AX
	CMPQ AX, CX
	JLT wrow
	VEXTRACTF64X4 $1, Z1, Y0
	VADDPS Y0, Y1, Y1
	VEXTRACTF128 $1, Y1, X0
	VADDPS X0, X1, X1
	VHADDPS X1, X1, X1
	VHADDPS X1, X1, X1
	VMOVSS X1, (R12)
	ADDQ $4, R12
	ADDQ R8, SI
	ADDQ R13, DI
	DECQ DX
	JNE wvec
	VZEROUPPER
	RET

// KVQ_KEY16 sets Z1 to the 16 values of a key at SI decoded (Z13 the controls, Z11 the
// periodic levels), put in their range (halves at (R11), mids at 64(R11)) and turned by
// the angles at R9 (each pair's cosine twice at (R9), its sine negated and as is at
// 64(R9)): (a, b) → (a·c − b·s, b·c + a·s). Clobbers Z0.
#define KVQ_KEY16 \
	VPMULTISHIFTQB.BCST (SI), Z13, Z0; \
	VPERMPS Z11, Z0, Z0; \
	VMOVUPS (R11), Z1; \
	VFMADD213PS 64(R11), Z1, Z0; \
	VPERMILPS $0xB1, Z0, Z1; \
	VMULPS 64(R9), Z1, Z1; \
	VFMADD231PS (R9), Z0, Z1

// KVQ_KEY16X(src, ang, t, k) is KVQ_KEY16 for the codes at src and the angles at ang,
// into k, clobbering t.
#define KVQ_KEY16X(src, ang, t, k) \
	VPMULTISHIFTQB.BCST src, Z13, t; \
	VPERMPS Z11, t, t; \
	VMOVUPS (R11), k; \
	VFMADD213PS 64(R11), k, t; \
	VPERMILPS $0xB1, t, k; \
	VMULPS 64(ang), k, k; \
	VFMADD231PS (ang), t, k

// KVQ_NEXT16(label) moves to the key's next 16 values (R13 = the bytes of one group's
// vectors) and loops to label while R12 counts down.
#define KVQ_NEXT16(label) \
	ADDQ BX, SI; \
	ADDQ $128, R11; \
	ADDQ $128, R9; \
	ADDQ R13, R10; \
	DECQ R12; \
	JNE label

// func kvqScoreKeysLo512(dst *float32, dstride int, prep *float32, nq int, src *byte, n, dim, bits int, levels, ranges *float32, pos *int32, hi *float32)
TEXT ·kvqScoreKeysLo512(SB), NOSPLIT, $0-96
	MOVQ dst+0(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), CX
	MOVQ bits+56(FP), BX
	MOVQ levels+64(FP), R8
	LEAQ ·kvqMultiShift(SB), R9
	MOVQ BX, R10
	SUBQ $2, R10
	SHLQ $6, R10
	VMOVDQU32 (R9)(R10*1), Z13
	VMOVUPS (R8), Z11
	// BX = the bytes of 16 codes, R13 = the bytes of one group's vectors (64·nq), DX =
	// the bytes of a stride of dst.
	SHLQ $1, BX
	MOVQ nq+24(FP), R13
	SHLQ $6, R13
	MOVQ dstride+8(FP), DX
	SHLQ $2, DX
	MOVQ pos+80(FP), R8
	TESTQ CX, CX
	JEQ kdone

krow:
	CMPQ R13, $192
	JNE krow1
	CMPQ CX, $2
	JGE kpair

krow1:
	// R9 = row p/32 of hi (8·dim bytes), R10 = the vectors of row p%32 (nq·dim·4 bytes)
	// (KVQLowPositions = 32), R11 = the ranges, R12 = the groups of 16 values.
	MOVLQSX (R8), AX
	MOVQ AX, R10
	SHRQ $5, AX
	ANDQ $31, R10
	MOVQ dim+48(FP), R12
	MOVQ R12, R9
	SHLQ $3, R9
	IMULQ R9, AX
	ADDQ hi+88(FP), AX
	MOVQ AX, R9
	MOVQ R12, AX
	SHRQ $4, AX
	IMULQ R13, AX
	IMULQ AX, R10
	ADDQ prep+16(FP), R10
	MOVQ ranges+72(FP), R11
	SHRQ $4, R12
	VXORPS X4, X4, X4
	VXORPS X5, X5, X5
	VXORPS X6, X6, X6
	VXORPS X7, X7, X7
	// One loop per number of vectors.
	CMPQ R13, $192
	JEQ kgroup3
	JGT kgroup4
	CMPQ R13, $128
	JEQ kgroup2

kgroup1:
	KVQ_KEY16
	VFMADD231PS (R10), Z1, Z4
	KVQ_NEXT16(kgroup1)
	JMP ksum

kgroup2:
	KVQ_KEY16
	VFMADD231PS (R10), Z1, Z4
	VFMADD231PS 64(R10), Z1, Z5
	KVQ_NEXT16(kgroup2)
	JMP ksum

kgroup3:
	KVQ_KEY16
	VFMADD231PS (R10), Z1, Z4
	VFMADD231PS 64(R10), Z1, Z5
	VFMADD231PS 128(R10), Z1, Z6
	KVQ_NEXT16(kgroup3)
	JMP ksum

kgroup4:
	KVQ_KEY16
	VFMADD231PS (R10), Z1, Z4
	VFMADD231PS 64(R10), Z1, Z5
	VFMADD231PS 128(R10), Z1, Z6
	VFMADD231PS 192(R10), Z1, Z7
	KVQ_NEXT16(kgroup4)

ksum:
	// X4 = the 4 sums, each reduced by the same tree whatever the others.
	VEXTRACTF64X4 $1, Z4, Y0
	VADDPS Y0, Y4, Y4
	VEXTRACTF64X4 $1, Z5, Y0
	VADDPS Y0, Y5, Y5
	VEXTRACTF64X4 $1, Z6, Y0
	VADDPS Y0, Y6, Y6
	VEXTRACTF64X4 $1, Z7, Y0
	VADDPS Y0, Y7, Y7
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VMOVSS X4, (DI)
	CMPQ R13, $64
	JEQ kstored
	VEXTRACTPS $1, X4, (DI)(DX*1)
	CMPQ R13, $128
	JEQ kstored
	VEXTRACTPS $2, X4, (DI)(DX*2)
	CMPQ R13, $192
	JEQ kstored
	LEAQ (DX)(DX*2), AX
	VEXTRACTPS $3, X4, (DI)(AX*1)

kstored:
	ADDQ $4, DI
	ADDQ $4, R8
	DECQ CX
	JNE krow

kdone:
	VZEROUPPER
	RET

kpair:
	// Two rows for 3 vectors: row A's codes at SI, its angles at R9 and vectors at R10;
	// row B's codes R13 bytes on, its angles at AX and vectors at DX. Each row's sums
	// are reduced by the tree of ksum.
	MOVLQSX (R8), R9
	MOVLQSX 4(R8), AX
	MOVQ R9, R10
	MOVQ AX, DX
	SHRQ $5, R9
	SHRQ $5, AX
	ANDQ $31, R10
	ANDQ $31, DX
	MOVQ dim+48(FP), R12
	SHLQ $3, R12
	IMULQ R12, R9
	IMULQ R12, AX
	ADDQ hi+88(FP), R9
	ADDQ hi+88(FP), AX
	LEAQ (R12)(R12*2), R12
	SHRQ $1, R12
	IMULQ R12, R10
	IMULQ R12, DX
	ADDQ prep+16(FP), R10
	ADDQ prep+16(FP), DX
	MOVQ dim+48(FP), R13
	IMULQ BX, R13
	SHRQ $4, R13
	MOVQ ranges+72(FP), R11
	MOVQ dim+48(FP), R12
	SHRQ $4, R12
	VXORPS X4, X4, X4
	VXORPS X5, X5, X5
	VXORPS X6, X6, X6
	VXORPS X7, X7, X7
	VXORPS X8, X8, X8
	VXORPS X9, X9, X9

kpgroup:
	KVQ_KEY16X((SI), R9, Z0, Z1)
	KVQ_KEY16X((SI)(R13*1), AX, Z2, Z3)
	VFMADD231PS (R10), Z1, Z4
	VFMADD231PS 64(R10), Z1, Z5
	VFMADD231PS 128(R10), Z1, Z6
	VFMADD231PS (DX), Z3, Z7
	VFMADD231PS 64(DX), Z3, Z8
	VFMADD231PS 128(DX), Z3, Z9
	ADDQ BX, SI
	ADDQ $128, R11
	ADDQ $128, R9
	ADDQ $128, AX
	ADDQ $192, R10
	ADDQ $192, DX
	DECQ R12
	JNE kpgroup
	ADDQ R13, SI
	// Per vector, row A's 16 lanes folded to 8 beside row B's: Z4-Z6 = [A (8) | B (8)].
	VSHUFF64X2 $0x44, Z7, Z4, Z0
	VSHUFF64X2 $0xEE, Z7, Z4, Z1
	VADDPS Z1, Z0, Z4
	VSHUFF64X2 $0x44, Z8, Z5, Z0
	VSHUFF64X2 $0xEE, Z8, Z5, Z1
	VADDPS Z1, Z0, Z5
	VSHUFF64X2 $0x44, Z9, Z6, Z0
	VSHUFF64X2 $0xEE, Z9, Z6, Z1
	VADDPS Z1, Z0, Z6
	// Adjacent lanes added (VHADDPS per 128 bits), twice, then the two 128-bit halves of
	// each row: the sums of row A in lanes 0-2, of row B in lanes 8-10.
	VSHUFPS $0x88, Z5, Z4, Z0
	VSHUFPS $0xDD, Z5, Z4, Z1
	VADDPS Z1, Z0, Z4
	VSHUFPS $0x88, Z6, Z6, Z0
	VSHUFPS $0xDD, Z6, Z6, Z1
	VADDPS Z1, Z0, Z6
	VSHUFPS $0x88, Z6, Z4, Z0
	VSHUFPS $0xDD, Z6, Z4, Z1
	VADDPS Z1, Z0, Z4
	VSHUFF32X4 $0xB1, Z4, Z4, Z0
	VADDPS Z0, Z4, Z4
	MOVQ dstride+8(FP), DX
	SHLQ $2, DX
	MOVQ $192, R13
	VMOVSS X4, (DI)
	VEXTRACTPS $1, X4, (DI)(DX*1)
	VEXTRACTPS $2, X4, (DI)(DX*2)
	VEXTRACTF32X4 $2, Z4, X0
	VMOVSS X0, 4(DI)
	VEXTRACTPS $1, X0, 4(DI)(DX*1)
	VEXTRACTPS $2, X0, 4(DI)(DX*2)
	ADDQ $8, DI
	ADDQ $8, R8
	SUBQ $2, CX
	JNE krow
	JMP kdone

// func kvqTurnQueries512(dst, q *float32, nq, dim int, back *float32)
TEXT ·kvqTurnQueries512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ q+8(FP), SI
	MOVQ nq+16(FP), DX
	MOVQ dim+24(FP), R9
	SHLQ $2, R9
	MOVQ back+32(FP), R8
	// CX counts the positions (KVQLowPositions), R10 = the group's byte offset in a
	// vector, R11 = the group in vector v, R12 counts the vectors; R8 and DI move on
	// through back and dst.
	MOVQ $32, CX

trow:
	XORQ R10, R10

tgroup:
	VMOVUPS (R8), Z2
	VMOVUPS 64(R8), Z3
	LEAQ (SI)(R10*1), R11
	MOVQ DX, R12

tvec:
	VMOVUPS (R11), Z0
	VPERMILPS $0xB1, Z0, Z1
	VMULPS Z3, Z1, Z1
	VFMADD231PS Z2, Z0, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, DI
	ADDQ R9, R11
	DECQ R12
	JNE tvec
	ADDQ $128, R8
	ADDQ $64, R10
	CMPQ R10, R9
	JNE tgroup
	DECQ CX
	JNE trow
	VZEROUPPER
	RET
