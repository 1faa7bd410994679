//go:build amd64 && !purego

// Q8_0 kernels; q8_0_amd64.go states what each function computes.
// Register use in the four-row dot products: AX is the byte offset of the current block
// within a row, SI R10 R11 R12 the group's rows, R13 and R14 cursors over the activation,
// R15 the prefetch pointer (two groups ahead). The eight-row one addresses the activation
// by the block index R14 (x at 8·R14, scales and sums at R14), keeps dst and the row
// count on the stack, rows 4-7 in R13 BX R9 R15, and prefetches 12 KB ahead of the
// group's linear position.

#include "textflag.h"

// Q8ROW_AVX2 adds row base's block at AX times the activation block (Y0 int8, Y1 its
// scale broadcast) to acc: |w|·(x·sign w) by VPMADDUBSW, pairs summed by VPMADDWD.
#define Q8ROW_AVX2(base, acc) \
	VMOVDQU 2(base)(AX*1), Y2 \
	VPSIGNB Y2, Y0, Y3 \
	VPABSB Y2, Y2 \
	VPMADDUBSW Y3, Y2, Y3 \
	VPMADDWD Y15, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VCVTPH2PS (base)(AX*1), X4 \
	VMULSS X1, X4, X4 \
	VBROADCASTSS X4, Y4 \
	VFMADD231PS Y3, Y4, acc

// func q8_0DotAVX2(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32)
TEXT ·q8_0DotAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), BX
	MOVQ rows+8(FP), R9
	MOVQ w+16(FP), SI
	MOVQ rowBytes+24(FP), DX
	MOVQ x+32(FP), DI
	MOVQ xs+40(FP), R8
	MOVL $0x00010001, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15

group4:
	CMPQ R9, $4
	JLT tail
	LEAQ (SI)(DX*1), R10
	LEAQ (SI)(DX*2), R11
	LEAQ (R10)(DX*2), R12
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	XORQ AX, AX
	MOVQ DI, R13
	MOVQ R8, R14

block4:
	LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read
	PREFETCHT0 (R15)(DX*8)
	PREFETCHT0 64(R15)(DX*8)
	PREFETCHT0 128(R15)(DX*8)
	VMOVDQU (R13), Y0
	VBROADCASTSS (R14), Y1
	Q8ROW_AVX2(SI, Y6)
	Q8ROW_AVX2(R10, Y7)
	Q8ROW_AVX2(R11, Y8)
	Q8ROW_AVX2(R12, Y9)
	ADDQ $34, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT block4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VMOVUPS X6, (BX)
	ADDQ $16, BX
	LEAQ (SI)(DX*4), SI
	SUBQ $4, R9
	JMP group4

tail:
	TESTQ R9, R9
	JLE done
	VXORPS Y6, Y6, Y6
	XORQ AX, AX
	MOVQ DI, R13
	MOVQ R8, R14

block1:
	VMOVDQU (R13), Y0
	VBROADCASTSS (R14), Y1
	Q8ROW_AVX2(SI, Y6)
	ADDQ $34, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT block1
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VMOVSS X6, (BX)
	ADDQ $4, BX
	ADDQ DX, SI
	DECQ R9
	JMP tail

done:
	VZEROUPPER
	RET

// Q8ROW_VNNI adds row base's block at AX times the activation block (Y16 int8, Y17 its
// scale broadcast, Y18 = -16·Σx in each lane) to acc: (w XOR 0x80) = w+128 as unsigned
// bytes, VPDPBUSD into the correction, so the lanes sum to Σ w·x exactly.
#define Q8ROW_VNNI(base, acc) \
	VPXORD 2(base)(AX*1), Y28, Y19 \
	VMOVDQA32 Y18, Y21 \
	VPDPBUSD Y16, Y19, Y21 \
	VCVTDQ2PS Y21, Y21 \
	VCVTPH2PS (base)(AX*1), X20 \
	VMULSS X17, X20, X20 \
	VBROADCASTSS X20, Y20 \
	VFMADD231PS Y21, Y20, acc

// func q8_0DotVNNI(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q8_0DotVNNI(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), BX
	MOVQ rows+8(FP), R9
	MOVQ w+16(FP), SI
	MOVQ rowBytes+24(FP), DX
	MOVQ x+32(FP), DI
	MOVQ xs+40(FP), R8
	MOVQ xsum+48(FP), CX
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Y28
	VPXORD Y29, Y29, Y29

vgroup4:
	CMPQ R9, $4
	JLT vtail
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

vblock4:
	LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read
	PREFETCHT0 (R15)(DX*8)
	PREFETCHT0 64(R15)(DX*8)
	PREFETCHT0 128(R15)(DX*8)
	VMOVDQU32 (R13), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VPSLLD $4, Y18, Y18
	VPSUBD Y18, Y29, Y18
	Q8ROW_VNNI(SI, Y6)
	Q8ROW_VNNI(R10, Y7)
	Q8ROW_VNNI(R11, Y8)
	Q8ROW_VNNI(R12, Y9)
	ADDQ $34, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT vblock4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y9, Y8, Y8
	VHADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VMOVUPS X6, (BX)
	ADDQ $16, BX
	LEAQ (SI)(DX*4), SI
	SUBQ $4, R9
	JMP vgroup4

vtail:
	TESTQ R9, R9
	JLE vdone
	VXORPS Y6, Y6, Y6
	XORQ AX, AX
	MOVQ DI, R13
	XORQ R14, R14

vblock1:
	VMOVDQU32 (R13), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VPSLLD $4, Y18, Y18
	VPSUBD Y18, Y29, Y18
	Q8ROW_VNNI(SI, Y6)
	ADDQ $34, AX
	ADDQ $32, R13
	ADDQ $4, R14
	CMPQ AX, DX
	JLT vblock1
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VMOVSS X6, (BX)
	ADDQ $4, BX
	ADDQ DX, SI
	DECQ R9
	JMP vtail

vdone:
	VZEROUPPER
	RET

// func q8_0DequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q8_0DequantAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	TESTQ CX, CX
	JLE ddone

dloop:
	VPBROADCASTW (SI), X0
	VCVTPH2PS X0, Y0
	VPMOVSXBD 2(SI), Y1
	VPMOVSXBD 10(SI), Y2
	VPMOVSXBD 18(SI), Y3
	VPMOVSXBD 26(SI), Y4
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VCVTDQ2PS Y4, Y4
	VMULPS Y0, Y1, Y1
	VMULPS Y0, Y2, Y2
	VMULPS Y0, Y3, Y3
	VMULPS Y0, Y4, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ $34, SI
	ADDQ $128, DI
	DECQ CX
	JNZ dloop

ddone:
	VZEROUPPER
	RET

// func q8_0DotVNNI8(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)
TEXT ·q8_0DotVNNI8(SB), NOSPLIT, $16-56
	MOVQ dst+0(FP), BX
	MOVQ rows+8(FP), R9
	MOVQ BX, dstp-8(SP)
	MOVQ R9, left-16(SP)
	MOVQ w+16(FP), SI
	MOVQ rowBytes+24(FP), DX
	MOVQ x+32(FP), DI
	MOVQ xs+40(FP), R8
	MOVQ xsum+48(FP), CX
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Y28
	VPXORD Y29, Y29, Y29

egroup8:
	CMPQ left-16(SP), $8
	JLT edone
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

eblock8:
	PREFETCHT0 12288(SI)(AX*8)
	PREFETCHT0 12352(SI)(AX*8)
	PREFETCHT0 12416(SI)(AX*8)
	PREFETCHT0 12480(SI)(AX*8)
	PREFETCHT0 12544(SI)(AX*8)
	VMOVDQU32 (DI)(R14*8), Y16
	VBROADCASTSS (R8)(R14*1), Y17
	VPBROADCASTD (CX)(R14*1), Y18
	VPSLLD $4, Y18, Y18
	VPSUBD Y18, Y29, Y18
	Q8ROW_VNNI(SI, Y6)
	Q8ROW_VNNI(R10, Y7)
	Q8ROW_VNNI(R11, Y8)
	Q8ROW_VNNI(R12, Y9)
	Q8ROW_VNNI(R13, Y10)
	Q8ROW_VNNI(BX, Y11)
	Q8ROW_VNNI(R9, Y12)
	Q8ROW_VNNI(R15, Y13)
	ADDQ $34, AX
	ADDQ $4, R14
	CMPQ AX, DX
	JLT eblock8
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
	JMP egroup8

edone:
	VZEROUPPER
	RET
