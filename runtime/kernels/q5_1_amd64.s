//go:build amd64 && !purego

// Q5_1 kernels; q5_1_amd64.go states what each function computes. The AVX2 and the
// AVX-512 VNNI functions share one loop skeleton and differ in their row macro. Register
// use: AX is the byte offset of the current block within a row, SI R10 R11 R12 the four
// rows of a group (BX dst, R9 rows left, DX rowBytes), R13 and R14 cursors over the
// activation blocks and over their scales and sums, R15 the prefetch pointer; Y6-Y9
// accumulate the four rows. The eight-row VNNI function addresses the activation by the
// block index R14, keeps dst and the row count on the stack and rows 4-7 in R13 BX R9 R15.

#include "textflag.h"

// qh bytes to lanes (byte j/8 of qh to byte j) and the bit of each lane
DATA q5_1Spread<>+0(SB)/8, $0x0000000000000000
DATA q5_1Spread<>+8(SB)/8, $0x0101010101010101
DATA q5_1Spread<>+16(SB)/8, $0x0202020202020202
DATA q5_1Spread<>+24(SB)/8, $0x0303030303030303
GLOBL q5_1Spread<>(SB), RODATA|NOPTR, $32
DATA q5_1Bits<>+0(SB)/8, $0x8040201008040201
DATA q5_1Bits<>+8(SB)/8, $0x8040201008040201
DATA q5_1Bits<>+16(SB)/8, $0x8040201008040201
DATA q5_1Bits<>+24(SB)/8, $0x8040201008040201
GLOBL q5_1Bits<>(SB), RODATA|NOPTR, $32

// Q5_1ROW_AVX2 adds row base's block at AX times the activation block to acc: the 32
// nibbles as unsigned bytes
// (bit j of qh adding 16 to byte j), VPMADDUBSW with x, pairs summed by VPMADDWD,
// scaled by d·dx, plus m times Y5 (lanes summing to dx·Σx) for the minimum.
#define Q5_1ROW_AVX2(base, acc) \
	VMOVDQU 8(base)(AX*1), X2 \
	VPSRLW $4, X2, X3 \
	VINSERTI128 $1, X3, Y2, Y2 \
	VPAND Y14, Y2, Y2 \
	VPBROADCASTD 4(base)(AX*1), Y3 \
	VPSHUFB Y10, Y3, Y3 \
	VPAND Y11, Y3, Y3 \
	VPCMPEQB Y11, Y3, Y3 \
	VPAND Y12, Y3, Y3 \
	VPOR Y3, Y2, Y2 \
	VPMADDUBSW Y0, Y2, Y3 \
	VPMADDWD Y15, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VCVTPH2PS (base)(AX*1), X4 \
	VMULSS X1, X4, X4 \
	VBROADCASTSS X4, Y4 \
	VFMADD231PS Y3, Y4, acc \
	VPBROADCASTW 2(base)(AX*1), X4 \
	VCVTPH2PS X4, Y4 \
	VFMADD231PS Y5, Y4, acc

// Q5_1ROW_VNNI does what Q5_1ROW_AVX2 does with VPDPBUSD (Y18: dx·Σx/8 per lane).
#define Q5_1ROW_VNNI(base, acc) \
	VBROADCASTI32X4 8(base)(AX*1), Y19 \
	VPSRLVW Y24, Y19, Y19 \
	VPANDD Y26, Y19, Y19 \
	KMOVD 4(base)(AX*1), K1 \
	VPADDB Y27, Y19, K1, Y19 \
	VPXORD Y21, Y21, Y21 \
	VPDPBUSD Y16, Y19, Y21 \
	VCVTDQ2PS Y21, Y21 \
	VCVTPH2PS (base)(AX*1), X20 \
	VMULSS X17, X20, X20 \
	VBROADCASTSS X20, Y20 \
	VFMADD231PS Y21, Y20, acc \
	VPBROADCASTW 2(base)(AX*1), X20 \
	VCVTPH2PS X20, Y20 \
	VFMADD231PS Y18, Y20, acc

// func q5_1DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q5_1DotAVX2(SB), NOSPLIT, $0-56
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
	MOVL $0x3e000000, AX // 0.125
	MOVQ AX, X13
	VBROADCASTSS X13, Y13
	VMOVDQU q5_1Spread<>(SB), Y10
	VMOVDQU q5_1Bits<>(SB), Y11
	MOVL $0x10101010, AX
	MOVQ AX, X12
	VPBROADCASTD X12, Y12 // fifth bit

q5_1DotAVX2_group4:
	CMPQ R9, $4
	JLT q5_1DotAVX2_tail
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

q5_1DotAVX2_block4:
	LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read
	PREFETCHT0 (R15)(DX*8)
	PREFETCHT0 64(R15)(DX*8)
	VMOVDQU (R13), Y0
	VBROADCASTSS (R8)(R14*1), Y1
	VPBROADCASTD (CX)(R14*1), Y5
	VCVTDQ2PS Y5, Y5
	VMULPS Y1, Y5, Y5
	VMULPS Y13, Y5, Y5 // dx·Σx/8 in each lane
	Q5_1ROW_AVX2(SI, Y6)
	Q5_1ROW_AVX2(R10, Y7)
	Q5_1ROW_AVX2(R11, Y8)
	Q5_1ROW_AVX2(R12, Y9)
	ADDQ $24, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_1DotAVX2_block4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VMOVUPS X6, (BX)
	ADDQ $16, BX
	LEAQ (SI)(DX*4), SI
	SUBQ $4, R9
	JMP q5_1DotAVX2_group4

q5_1DotAVX2_tail:
	TESTQ R9, R9
	JLE q5_1DotAVX2_done
	VXORPS Y6, Y6, Y6
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

q5_1DotAVX2_block1:
	VMOVDQU (R13), Y0
	VBROADCASTSS (R8)(R14*1), Y1
	VPBROADCASTD (CX)(R14*1), Y5
	VCVTDQ2PS Y5, Y5
	VMULPS Y1, Y5, Y5
	VMULPS Y13, Y5, Y5 // dx·Σx/8 in each lane
	Q5_1ROW_AVX2(SI, Y6)
	ADDQ $24, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_1DotAVX2_block1
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VMOVSS X6, (BX)
	ADDQ $4, BX
	ADDQ DX, SI
	DECQ R9
	JMP q5_1DotAVX2_tail

q5_1DotAVX2_done:
	VZEROUPPER
	RET

// func q5_1DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q5_1DotVNNI(SB), NOSPLIT, $0-56
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
	MOVL $0x3e000000, AX // 0.125
	VPBROADCASTD AX, Y25

q5_1DotVNNI_group4:
	CMPQ R9, $4
	JLT q5_1DotVNNI_tail
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

q5_1DotVNNI_block4:
	LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read
	PREFETCHT0 (R15)(DX*8)
	PREFETCHT0 64(R15)(DX*8)
	VMOVDQU32 (R13), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VCVTDQ2PS Y18, Y18
	VMULPS Y17, Y18, Y18
	VMULPS Y25, Y18, Y18 // dx·Σx/8 in each lane
	Q5_1ROW_VNNI(SI, Y6)
	Q5_1ROW_VNNI(R10, Y7)
	Q5_1ROW_VNNI(R11, Y8)
	Q5_1ROW_VNNI(R12, Y9)
	ADDQ $24, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_1DotVNNI_block4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VMOVUPS X6, (BX)
	ADDQ $16, BX
	LEAQ (SI)(DX*4), SI
	SUBQ $4, R9
	JMP q5_1DotVNNI_group4

q5_1DotVNNI_tail:
	TESTQ R9, R9
	JLE q5_1DotVNNI_done
	VXORPS Y6, Y6, Y6
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

q5_1DotVNNI_block1:
	VMOVDQU32 (R13), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VCVTDQ2PS Y18, Y18
	VMULPS Y17, Y18, Y18
	VMULPS Y25, Y18, Y18 // dx·Σx/8 in each lane
	Q5_1ROW_VNNI(SI, Y6)
	ADDQ $24, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_1DotVNNI_block1
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VMOVSS X6, (BX)
	ADDQ $4, BX
	ADDQ DX, SI
	DECQ R9
	JMP q5_1DotVNNI_tail

q5_1DotVNNI_done:
	VZEROUPPER
	RET

// func q5_1DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q5_1DotVNNI8(SB), NOSPLIT, $16-56
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
	MOVL $0x3e000000, AX // 0.125
	VPBROADCASTD AX, Y25

q5_1DotVNNI8_group8:
	CMPQ left-16(SP), $8
	JLT q5_1DotVNNI8_done
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

q5_1DotVNNI8_block8:
	// prefetch 12 KB ahead of the group's linear position, at the rate it is read
	PREFETCHT0 12288(SI)(AX*8)
	PREFETCHT0 12352(SI)(AX*8)
	PREFETCHT0 12416(SI)(AX*8)
	VMOVDQU32 (DI)(R14*8), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VCVTDQ2PS Y18, Y18
	VMULPS Y17, Y18, Y18
	VMULPS Y25, Y18, Y18 // dx·Σx/8 in each lane
	Q5_1ROW_VNNI(SI, Y6)
	Q5_1ROW_VNNI(R10, Y7)
	Q5_1ROW_VNNI(R11, Y8)
	Q5_1ROW_VNNI(R12, Y9)
	Q5_1ROW_VNNI(R13, Y10)
	Q5_1ROW_VNNI(BX, Y11)
	Q5_1ROW_VNNI(R9, Y12)
	Q5_1ROW_VNNI(R15, Y13)
	ADDQ $24, AX
	ADDQ $4, R14
	CMPQ AX, DX
	JLT q5_1DotVNNI8_block8
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
	JMP q5_1DotVNNI8_group8

q5_1DotVNNI8_done:
	VZEROUPPER
	RET
