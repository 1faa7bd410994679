//go:build amd64 && !purego

#include "textflag.h"

#include "kquant_amd64.h"

// Q4_VNNI_GROUP sets ACC to the scaled products of nibble group g: 32 bytes at
// off(R8), low nibbles against x at xoff(DI) with the scale at soff(SP), high nibbles
// against x at xoff+32(DI) with the scale at soff+4(SP). (One accumulator per group
// keeps the VPDPWSSD dependency chains short.)
#define Q4_VNNI_GROUP(off, xoff, soff, T0, T1, T2, T3, ACC) \
	VMOVDQU32 off(R8), T0 \
	VPSRLW $4, T0, T1 \
	VPANDD Y31, T0, T0 \
	VPANDD Y31, T1, T1 \
	VPXORD T2, T2, T2 \
	VPXORD T3, T3, T3 \
	VPDPBUSD xoff(DI), T0, T2 \
	VPDPBUSD xoff+32(DI), T1, T3 \
	VPXORD ACC, ACC, ACC \
	VPDPWSSD.BCST soff(SP), T2, ACC \
	VPDPWSSD.BCST soff+4(SP), T3, ACC

// func dotQ4KVNNI(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)
TEXT ·dotQ4KVNNI(SB), NOSPLIT, $32-136
	MOVQ dst_base+0(FP), AX
	MOVQ dst_len+8(FP), CX
	MOVQ w_base+24(FP), SI
	MOVQ rowBytes+48(FP), DX
	TESTQ CX, CX
	JEQ  done
	VMOVDQU32 kqShiftA<>(SB), X28
	VMOVDQU32 kqMaskA<>(SB), X29
	VMOVDQU32 kqMaskB<>(SB), X30
	MOVL $0x0f0f0f0f, R13
	VPBROADCASTD R13, Y31

row:
	MOVQ SI, R8
	MOVQ x_base+64(FP), DI
	MOVQ xscale_base+88(FP), R10
	MOVQ xsum_base+112(FP), R11
	MOVQ nb+56(FP), R12
	VPXORD Y0, Y0, Y0
	VPXORD Y1, Y1, Y1

block:
	KQ_SCALES(X28, X29, X30, VPANDD)
	VPMOVZXBD X3, Y4
	VMOVDQU Y4, (SP)
	KQ_MINS
	KQ_DDMIN
	VFMADD231PS Y5, Y7, Y1
	Q4_VNNI_GROUP(16, 0, 0, Y8, Y9, Y11, Y12, Y10)
	Q4_VNNI_GROUP(48, 64, 8, Y13, Y14, Y15, Y16, Y25)
	Q4_VNNI_GROUP(80, 128, 16, Y17, Y18, Y19, Y20, Y26)
	Q4_VNNI_GROUP(112, 192, 24, Y21, Y22, Y23, Y24, Y27)
	VPADDD Y25, Y10, Y10
	VPADDD Y27, Y26, Y26
	VPADDD Y26, Y10, Y10
	VCVTDQ2PS Y10, Y10
	VFMADD231PS Y10, Y6, Y0
	ADDQ $144, R8
	ADDQ $256, DI
	ADDQ $4, R10
	ADDQ $32, R11
	DECQ R12
	JNZ  block

	KQ_HSUM
	ADDQ $4, AX
	ADDQ DX, SI
	DECQ CX
	JNZ  row

done:
	VZEROUPPER
	RET

// Q4_AVX2_GROUP is Q4_VNNI_GROUP with VPMADDUBSW pairs and VPMADDWD by [sc, sc] words.
#define Q4_AVX2_GROUP(off, xoff, soff) \
	VMOVDQU off(R8), Y8 \
	VPSRLW $4, Y8, Y9 \
	VPAND Y15, Y8, Y8 \
	VPAND Y15, Y9, Y9 \
	VPMADDUBSW xoff(DI), Y8, Y8 \
	VPMADDUBSW xoff+32(DI), Y9, Y9 \
	VPBROADCASTD soff(SP), Y11 \
	VPMADDWD Y11, Y8, Y8 \
	VPBROADCASTD soff+4(SP), Y11 \
	VPMADDWD Y11, Y9, Y9 \
	VPADDD Y8, Y10, Y10 \
	VPADDD Y9, Y10, Y10

// func dotQ4KAVX2(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)
TEXT ·dotQ4KAVX2(SB), NOSPLIT, $32-136
	MOVQ dst_base+0(FP), AX
	MOVQ dst_len+8(FP), CX
	MOVQ w_base+24(FP), SI
	MOVQ rowBytes+48(FP), DX
	TESTQ CX, CX
	JEQ  done
	VMOVDQU kqShiftA<>(SB), X12
	VMOVDQU kqMaskA<>(SB), X13
	VMOVDQU kqMaskB<>(SB), X14
	MOVL $0x0f0f0f0f, R13
	VMOVQ R13, X15
	VPBROADCASTD X15, Y15

row:
	MOVQ SI, R8
	MOVQ x_base+64(FP), DI
	MOVQ xscale_base+88(FP), R10
	MOVQ xsum_base+112(FP), R11
	MOVQ nb+56(FP), R12
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1

block:
	KQ_SCALES(X12, X13, X14, VPAND)
	VPMOVZXBD X3, Y4
	VPSLLD $16, Y4, Y5
	VPOR Y5, Y4, Y4
	VMOVDQU Y4, (SP)
	KQ_MINS
	KQ_DDMIN
	VFMADD231PS Y5, Y7, Y1
	VPXOR Y10, Y10, Y10
	Q4_AVX2_GROUP(16, 0, 0)
	Q4_AVX2_GROUP(48, 64, 8)
	Q4_AVX2_GROUP(80, 128, 16)
	Q4_AVX2_GROUP(112, 192, 24)
	VCVTDQ2PS Y10, Y10
	VFMADD231PS Y10, Y6, Y0
	ADDQ $144, R8
	ADDQ $256, DI
	ADDQ $4, R10
	ADDQ $32, R11
	DECQ R12
	JNZ  block

	KQ_HSUM
	ADDQ $4, AX
	ADDQ DX, SI
	DECQ CX
	JNZ  row

done:
	VZEROUPPER
	RET

// Q4D_SCALES loads the decoded scale and minimum of sub-blocks 2g (Y0, Y1) and 2g+1
// (Y2, Y3) from the stack: d·sc at soff(SP), dmin·m at moff(SP).
#define Q4D_SCALES(soff, moff) \
	VBROADCASTSS soff(SP), Y0 \
	VBROADCASTSS moff(SP), Y1 \
	VBROADCASTSS soff+4(SP), Y2 \
	VBROADCASTSS moff+4(SP), Y3

// Q4D_CHUNK decodes 8 nibble bytes at qoff(R8): the low nibbles to 8 floats at
// lo(DI) with Y0, Y1 and the high nibbles to 8 floats at hi(DI) with Y2, Y3.
#define Q4D_CHUNK(qoff, lo, hi) \
	VPMOVZXBD qoff(R8), Y8 \
	VPAND Y15, Y8, Y9 \
	VPSRLD $4, Y8, Y8 \
	VCVTDQ2PS Y9, Y9 \
	VMULPS Y0, Y9, Y9 \
	VSUBPS Y1, Y9, Y9 \
	VMOVUPS Y9, lo(DI) \
	VCVTDQ2PS Y8, Y8 \
	VMULPS Y2, Y8, Y8 \
	VSUBPS Y3, Y8, Y8 \
	VMOVUPS Y8, hi(DI)

// func dequantQ4KAVX2(dst []float32, src []byte)
//
// dequantQ4KAVX2 is dequantQ4K for len(dst)/256 super-blocks, with the same float
// operations (d·sc and dmin·m rounded, then d·sc·q - dmin·m with two roundings).
TEXT ·dequantQ4KAVX2(SB), NOSPLIT, $64-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), R8
	SHRQ $8, CX
	JEQ  done
	VMOVDQU kqShiftA<>(SB), X12
	VMOVDQU kqMaskA<>(SB), X13
	VMOVDQU kqMaskB<>(SB), X14
	MOVL $15, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, Y15

block:
	KQ_SCALES(X12, X13, X14, VPAND)
	VPMOVZXBD X3, Y4
	VCVTDQ2PS Y4, Y4
	VPSRLDQ $8, X3, X5
	VPMOVZXBD X5, Y5
	VCVTDQ2PS Y5, Y5
	VPBROADCASTD (R8), X6
	VCVTPH2PS X6, Y6
	VSHUFPS $0x00, Y6, Y6, Y7
	VSHUFPS $0x55, Y6, Y6, Y6
	VMULPS Y7, Y4, Y4
	VMULPS Y6, Y5, Y5
	VMOVUPS Y4, (SP)
	VMOVUPS Y5, 32(SP)
	Q4D_SCALES(0, 32)
	Q4D_CHUNK(16, 0, 128)
	Q4D_CHUNK(24, 32, 160)
	Q4D_CHUNK(32, 64, 192)
	Q4D_CHUNK(40, 96, 224)
	Q4D_SCALES(8, 40)
	Q4D_CHUNK(48, 256, 384)
	Q4D_CHUNK(56, 288, 416)
	Q4D_CHUNK(64, 320, 448)
	Q4D_CHUNK(72, 352, 480)
	Q4D_SCALES(16, 48)
	Q4D_CHUNK(80, 512, 640)
	Q4D_CHUNK(88, 544, 672)
	Q4D_CHUNK(96, 576, 704)
	Q4D_CHUNK(104, 608, 736)
	Q4D_SCALES(24, 56)
	Q4D_CHUNK(112, 768, 896)
	Q4D_CHUNK(120, 800, 928)
	Q4D_CHUNK(128, 832, 960)
	Q4D_CHUNK(136, 864, 992)
	ADDQ $144, R8
	ADDQ $1024, DI
	DECQ CX
	JNZ  block

done:
	VZEROUPPER
	RET
