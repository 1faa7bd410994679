//go:build amd64 && !purego

// Q5_0 kernels; q5_0_amd64.go states what each function computes. The AVX2 and the
// AVX-512 VNNI functions share one loop skeleton and differ in their row macro. Register
// use: AX is the byte offset of the current block within a row, SI R10 R11 R12 the four
// rows of a group (BX dst, R9 rows left, DX rowBytes), R13 and R14 cursors over the
// activation blocks and over their scales and sums, R15 the prefetch pointer; Y6-Y9
// accumulate the four rows. The eight-row VNNI function addresses the activation by the
// block index R14, keeps dst and the row count on the stack and rows 4-7 in R13 BX R9 R15.

#include "textflag.h"

// qh bytes to lanes (byte j/8 of qh to byte j) and the bit of each lane
DATA q5_0Spread<>+0(SB)/8, $0x0000000000000000
DATA q5_0Spread<>+8(SB)/8, $0x0101010101010101
DATA q5_0Spread<>+16(SB)/8, $0x0202020202020202
DATA q5_0Spread<>+24(SB)/8, $0x0303030303030303
GLOBL q5_0Spread<>(SB), RODATA|NOPTR, $32
DATA q5_0Bits<>+0(SB)/8, $0x8040201008040201
DATA q5_0Bits<>+8(SB)/8, $0x8040201008040201
DATA q5_0Bits<>+16(SB)/8, $0x8040201008040201
DATA q5_0Bits<>+24(SB)/8, $0x8040201008040201
GLOBL q5_0Bits<>(SB), RODATA|NOPTR, $32

// Q5_0ROW_AVX2 adds row base's block at AX times the activation block to acc: the 32
// nibbles as unsigned bytes with bit j of qh added as 16 to byte j, VPMADDUBSW with x,
// pairs summed by VPMADDWD, plus Y5 (lanes summing to -16·Σx) for the offset of 16.
#define Q5_0ROW_AVX2(base, acc) \
	VMOVDQU 6(base)(AX*1), X2 \
	VPSRLW $4, X2, X3 \
	VINSERTI128 $1, X3, Y2, Y2 \
	VPAND Y14, Y2, Y2 \
	VPBROADCASTD 2(base)(AX*1), Y3 \
	VPSHUFB Y10, Y3, Y3 \
	VPAND Y11, Y3, Y3 \
	VPCMPEQB Y11, Y3, Y3 \
	VPAND Y12, Y3, Y3 \
	VPOR Y3, Y2, Y2 \
	VPMADDUBSW Y0, Y2, Y3 \
	VPMADDWD Y15, Y3, Y3 \
	VPADDD Y5, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VCVTPH2PS (base)(AX*1), X4 \
	VMULSS X1, X4, X4 \
	VBROADCASTSS X4, Y4 \
	VFMADD231PS Y3, Y4, acc

// Q5_0ROW_VNNI does what Q5_0ROW_AVX2 does, taking qh as a byte mask for adding 16, and
// VPDPBUSD into the correction Y18.
#define Q5_0ROW_VNNI(base, acc) \
	VBROADCASTI32X4 6(base)(AX*1), Y19 \
	VPSRLVW Y24, Y19, Y19 \
	VPANDD Y26, Y19, Y19 \
	KMOVD 2(base)(AX*1), K1 \
	VPADDB Y27, Y19, K1, Y19 \
	VMOVDQA32 Y18, Y21 \
	VPDPBUSD Y16, Y19, Y21 \
	VCVTDQ2PS Y21, Y21 \
	VCVTPH2PS (base)(AX*1), X20 \
	VMULSS X17, X20, X20 \
	VBROADCASTSS X20, Y20 \
	VFMADD231PS Y21, Y20, acc

// func q5_0DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q5_0DotAVX2(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), BX
	MOVQ rows+8(FP), R9
	MOVQ w+16(FP), SI
	MOVQ rowBytes+24(FP), DX
	MOVQ x+32(FP), DI
	MOVQ xs+40(FP), R8
	MOVQ xsum+48(FP), CX
	MOVL $0x00010001, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15 // int16 ones for VPMADDWD
	MOVL $0x0f0f0f0f, AX
	MOVQ AX, X14
	VPBROADCASTD X14, Y14 // low-nibble mask
	VPXOR Y13, Y13, Y13
	VMOVDQU q5_0Spread<>(SB), Y10
	VMOVDQU q5_0Bits<>(SB), Y11
	MOVL $0x10101010, AX
	MOVQ AX, X12
	VPBROADCASTD X12, Y12 // fifth bit

q5_0DotAVX2_group4:
	CMPQ R9, $4
	JLT q5_0DotAVX2_tail
	LEAQ (SI)(DX*1), R10
	LEAQ (SI)(DX*2), R11
	LEAQ (R10)(DX*2), R12
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

q5_0DotAVX2_block4:
	LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read
	PREFETCHT0 (R15)(DX*8)
	PREFETCHT0 64(R15)(DX*8)
	VMOVDQU (R13), Y0
	VBROADCASTSS (R8)(R14*1), Y1
	VPBROADCASTD (CX)(R14*1), Y5
	VPSLLD $1, Y5, Y5
	VPSUBD Y5, Y13, Y5 // lanes sum to -offset·Σx
	Q5_0ROW_AVX2(SI, Y6)
	Q5_0ROW_AVX2(R10, Y7)
	Q5_0ROW_AVX2(R11, Y8)
	Q5_0ROW_AVX2(R12, Y9)
	ADDQ $22, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_0DotAVX2_block4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VMOVUPS X6, (BX)
	ADDQ $16, BX
	LEAQ (SI)(DX*4), SI
	SUBQ $4, R9
	JMP q5_0DotAVX2_group4

q5_0DotAVX2_tail:
	TESTQ R9, R9
	JLE q5_0DotAVX2_done
	VXORPS Y6, Y6, Y6
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

q5_0DotAVX2_block1:
	VMOVDQU (R13), Y0
	VBROADCASTSS (R8)(R14*1), Y1
	VPBROADCASTD (CX)(R14*1), Y5
	VPSLLD $1, Y5, Y5
	VPSUBD Y5, Y13, Y5 // lanes sum to -offset·Σx
	Q5_0ROW_AVX2(SI, Y6)
	ADDQ $22, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_0DotAVX2_block1
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VMOVSS X6, (BX)
	ADDQ $4, BX
	ADDQ DX, SI
	DECQ R9
	JMP q5_0DotAVX2_tail

q5_0DotAVX2_done:
	VZEROUPPER
	RET

// func q5_0DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q5_0DotVNNI(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), BX
	MOVQ rows+8(FP), R9
	MOVQ w+16(FP), SI
	MOVQ rowBytes+24(FP), DX
	MOVQ x+32(FP), DI
	MOVQ xs+40(FP), R8
	MOVQ xsum+48(FP), CX
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Y26 // low-nibble mask
	MOVL $0x10101010, AX
	VPBROADCASTD AX, Y27 // fifth bit
	VPXORD Y29, Y29, Y29
	MOVL $0x00040004, AX
	VPBROADCASTD AX, Y24
	VINSERTI32X4 $0, X29, Y24, Y24 // word shifts: 0 for the low nibbles, 4 for the high

q5_0DotVNNI_group4:
	CMPQ R9, $4
	JLT q5_0DotVNNI_tail
	LEAQ (SI)(DX*1), R10
	LEAQ (SI)(DX*2), R11
	LEAQ (R10)(DX*2), R12
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

q5_0DotVNNI_block4:
	LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read
	PREFETCHT0 (R15)(DX*8)
	PREFETCHT0 64(R15)(DX*8)
	VMOVDQU32 (R13), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VPSLLD $1, Y18, Y18
	VPSUBD Y18, Y29, Y18 // lanes sum to -offset·Σx
	Q5_0ROW_VNNI(SI, Y6)
	Q5_0ROW_VNNI(R10, Y7)
	Q5_0ROW_VNNI(R11, Y8)
	Q5_0ROW_VNNI(R12, Y9)
	ADDQ $22, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_0DotVNNI_block4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VMOVUPS X6, (BX)
	ADDQ $16, BX
	LEAQ (SI)(DX*4), SI
	SUBQ $4, R9
	JMP q5_0DotVNNI_group4

q5_0DotVNNI_tail:
	TESTQ R9, R9
	JLE q5_0DotVNNI_done
	VXORPS Y6, Y6, Y6
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

q5_0DotVNNI_block1:
	VMOVDQU32 (R13), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VPSLLD $1, Y18, Y18
	VPSUBD Y18, Y29, Y18 // lanes sum to -offset·Σx
	Q5_0ROW_VNNI(SI, Y6)
	ADDQ $22, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_0DotVNNI_block1
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VMOVSS X6, (BX)
	ADDQ $4, BX
	ADDQ DX, SI
	DECQ R9
	JMP q5_0DotVNNI_tail

q5_0DotVNNI_done:
	VZEROUPPER
	RET

// func q5_0DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q5_0DotVNNI8(SB), NOSPLIT, $16-56
	MOVQ dst+0(FP), BX
	MOVQ rows+8(FP), R9
	MOVQ BX, dstp-8(SP)
	MOVQ R9, left-16(SP)
	MOVQ w+16(FP), SI
	MOVQ rowBytes+24(FP), DX
	MOVQ x+32(FP), DI
	MOVQ xs+40(FP), R8
	MOVQ xsum+48(FP), CX
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Y26 // low-nibble mask
	MOVL $0x10101010, AX
	VPBROADCASTD AX, Y27 // fifth bit
	VPXORD Y29, Y29, Y29
	MOVL $0x00040004, AX
	VPBROADCASTD AX, Y24
	VINSERTI32X4 $0, X29, Y24, Y24 // word shifts: 0 for the low nibbles, 4 for the high

q5_0DotVNNI8_group8:
	CMPQ left-16(SP), $8
	JLT q5_0DotVNNI8_done
	LEAQ (SI)(DX*1), R10
	LEAQ (SI)(DX*2), R11
	LEAQ (R10)(DX*2), R12
	LEAQ (SI)(DX*4), R13
	LEAQ (R10)(DX*4), BX
	LEAQ (R11)(DX*4), R9
	LEAQ (R12)(DX*4), R15
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	XORQ AX, AX
	XORQ R14, R14

q5_0DotVNNI8_block8:
	// prefetch 12 KB ahead of the group's linear position, at the rate it is read
	PREFETCHT0 12288(SI)(AX*8)
	PREFETCHT0 12352(SI)(AX*8)
	PREFETCHT0 12416(SI)(AX*8)
	VMOVDQU32 (DI)(R14*8), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VPSLLD $1, Y18, Y18
	VPSUBD Y18, Y29, Y18 // lanes sum to -offset·Σx
	Q5_0ROW_VNNI(SI, Y6)
	Q5_0ROW_VNNI(R10, Y7)
	Q5_0ROW_VNNI(R11, Y8)
	Q5_0ROW_VNNI(R12, Y9)
	Q5_0ROW_VNNI(R13, Y10)
	Q5_0ROW_VNNI(BX, Y11)
	Q5_0ROW_VNNI(R9, Y12)
	Q5_0ROW_VNNI(R15, Y13)
	ADDQ $22, AX
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_0DotVNNI8_block8
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y11, Y10, Y10
	VHADDPS Y13, Y12, Y12
	VHADDPS Y8, Y6, Y6
	VHADDPS Y12, Y10, Y10
	VPERM2F128 $0x20, Y10, Y6, Y7
	VPERM2F128 $0x31, Y10, Y6, Y8
	VADDPS Y8, Y7, Y7
	MOVQ dstp-8(SP), BX
	VMOVUPS Y7, (BX)
	ADDQ $32, BX
	MOVQ BX, dstp-8(SP)
	SUBQ $8, left-16(SP)
	LEAQ (SI)(DX*8), SI
	JMP q5_0DotVNNI8_group8

q5_0DotVNNI8_done:
	VZEROUPPER
	RET

// func q5_0DequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q5_0DequantAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	TESTQ CX, CX
	JLE q5_0d_done
	MOVL $0x0f0f0f0f, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x10101010, AX
	MOVQ AX, X14
	VPBROADCASTD X14, Y14
	VMOVDQU q5_0Spread<>(SB), Y13
	VMOVDQU q5_0Bits<>(SB), Y12

q5_0d_loop:
	VPBROADCASTW (SI), X0
	VCVTPH2PS X0, Y0
	VMOVDQU 6(SI), X1
	VPSRLW $4, X1, X2
	VINSERTI128 $1, X2, Y1, Y1
	VPAND Y15, Y1, Y1
	VPBROADCASTD 2(SI), Y2
	VPSHUFB Y13, Y2, Y2
	VPAND Y12, Y2, Y2
	VPCMPEQB Y12, Y2, Y2
	VPAND Y14, Y2, Y2
	VPOR Y2, Y1, Y1
	VPSUBB Y14, Y1, Y1 // q-16 as signed bytes
	VEXTRACTI128 $1, Y1, X2
	VPSRLDQ $8, X1, X3
	VPSRLDQ $8, X2, X4
	VPMOVSXBD X1, Y1
	VPMOVSXBD X3, Y3
	VPMOVSXBD X2, Y2
	VPMOVSXBD X4, Y4
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y3, Y3
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y4, Y4
	VMULPS Y0, Y1, Y1
	VMULPS Y0, Y3, Y3
	VMULPS Y0, Y2, Y2
	VMULPS Y0, Y4, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y3, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ $22, SI
	ADDQ $128, DI
	DECQ CX
	JNZ q5_0d_loop

q5_0d_done:
	VZEROUPPER
	RET
