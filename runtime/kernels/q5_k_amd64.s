//go:build amd64 && !purego

#include "textflag.h"

#include "kquant_amd64.h"

// Q5_K kernels: the Q4_K kernels with a fifth bit per value. The block is d, dmin,
// 12 scale bytes, qh (32 bytes at 16) and qs (128 bytes at 48). For nibble group g the
// low-nibble values take bit 2g of qh[l] and the high-nibble values bit 2g+1; with H
// holding qh shifted right by 2g, these are (H<<4)&0x10 and (H<<3)&0x10.

// Q5_VNNI_GROUP sets ACC to the scaled products of group g (qs at off(R8), x at
// xoff(DI), scales at soff(SP)) and shifts H (in Y3) right by 2 for the next group;
// the 0x10 mask is in Y2.
#define Q5_VNNI_GROUP(off, xoff, soff, T0, T1, T2, T3, ACC) \
	VMOVDQU32 off(R8), T0 \
	VPSRLW $4, T0, T1 \
	VPSLLW $4, Y3, T2 \
	VPANDD Y2, T2, T2 \
	VPTERNLOGD $0xF8, Y31, T0, T2 \
	VPSLLW $3, Y3, T3 \
	VPANDD Y2, T3, T3 \
	VPTERNLOGD $0xF8, Y31, T1, T3 \
	VPSRLW $2, Y3, Y3 \
	VPXORD T0, T0, T0 \
	VPXORD T1, T1, T1 \
	VPDPBUSD xoff(DI), T2, T0 \
	VPDPBUSD xoff+32(DI), T3, T1 \
	VPXORD ACC, ACC, ACC \
	VPDPWSSD.BCST soff(SP), T0, ACC \
	VPDPWSSD.BCST soff+4(SP), T1, ACC

// func dotQ5KVNNI(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)
TEXT ·dotQ5KVNNI(SB), NOSPLIT, $32-136
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
	MOVL $0x10101010, R13
	VPBROADCASTD R13, Y2

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
	VMOVDQU 16(R8), Y3
	Q5_VNNI_GROUP(48, 0, 0, Y8, Y9, Y11, Y12, Y10)
	Q5_VNNI_GROUP(80, 64, 8, Y13, Y14, Y15, Y16, Y25)
	Q5_VNNI_GROUP(112, 128, 16, Y17, Y18, Y19, Y20, Y26)
	Q5_VNNI_GROUP(144, 192, 24, Y21, Y22, Y23, Y24, Y27)
	VPADDD Y25, Y10, Y10
	VPADDD Y27, Y26, Y26
	VPADDD Y26, Y10, Y10
	VCVTDQ2PS Y10, Y10
	VFMADD231PS Y10, Y6, Y0
	ADDQ $176, R8
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

// Q5_AVX2_GROUP is Q5_VNNI_GROUP with VPMADDUBSW pairs and VPMADDWD by [sc, sc] words;
// H is in Y4 and the 0x10 mask in Y2.
#define Q5_AVX2_GROUP(off, xoff, soff) \
	VMOVDQU off(R8), Y8 \
	VPSRLW $4, Y8, Y9 \
	VPAND Y15, Y8, Y8 \
	VPAND Y15, Y9, Y9 \
	VPSLLW $4, Y4, Y11 \
	VPAND Y2, Y11, Y11 \
	VPOR Y11, Y8, Y8 \
	VPSLLW $3, Y4, Y11 \
	VPAND Y2, Y11, Y11 \
	VPOR Y11, Y9, Y9 \
	VPSRLW $2, Y4, Y4 \
	VPMADDUBSW xoff(DI), Y8, Y8 \
	VPMADDUBSW xoff+32(DI), Y9, Y9 \
	VPBROADCASTD soff(SP), Y11 \
	VPMADDWD Y11, Y8, Y8 \
	VPBROADCASTD soff+4(SP), Y11 \
	VPMADDWD Y11, Y9, Y9 \
	VPADDD Y8, Y10, Y10 \
	VPADDD Y9, Y10, Y10

// func dotQ5KAVX2(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)
TEXT ·dotQ5KAVX2(SB), NOSPLIT, $32-136
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
	MOVL $0x10101010, R13
	VMOVQ R13, X2
	VPBROADCASTD X2, Y2

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
	VMOVDQU 16(R8), Y4
	VPXOR Y10, Y10, Y10
	Q5_AVX2_GROUP(48, 0, 0)
	Q5_AVX2_GROUP(80, 64, 8)
	Q5_AVX2_GROUP(112, 128, 16)
	Q5_AVX2_GROUP(144, 192, 24)
	VCVTDQ2PS Y10, Y10
	VFMADD231PS Y10, Y6, Y0
	ADDQ $176, R8
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

DATA kq16<>+0(SB)/4, $16
GLOBL kq16<>(SB), RODATA|NOPTR, $4

// Q5D_CHUNK is Q4D_CHUNK for Q5_K: the fifth bits come from the 8 qh bytes at h(R8),
// moved to bit 4 by LOSH $los (low nibbles) and HISH $his (high nibbles) and masked by
// Y7 (16 in every dword).
#define Q5D_CHUNK(qoff, h, lo, hi, LOSH, los, HISH, his) \
	VPMOVZXBD qoff(R8), Y8 \
	VPMOVZXBD h(R8), Y10 \
	VPAND Y15, Y8, Y9 \
	VPSRLD $4, Y8, Y8 \
	LOSH $los, Y10, Y11 \
	VPAND Y7, Y11, Y11 \
	VPOR Y11, Y9, Y9 \
	HISH $his, Y10, Y11 \
	VPAND Y7, Y11, Y11 \
	VPOR Y11, Y8, Y8 \
	VCVTDQ2PS Y9, Y9 \
	VMULPS Y0, Y9, Y9 \
	VSUBPS Y1, Y9, Y9 \
	VMOVUPS Y9, lo(DI) \
	VCVTDQ2PS Y8, Y8 \
	VMULPS Y2, Y8, Y8 \
	VSUBPS Y3, Y8, Y8 \
	VMOVUPS Y8, hi(DI)

// func dequantQ5KAVX2(dst []float32, src []byte)
//
// dequantQ5KAVX2 is dequantQ5K for len(dst)/256 super-blocks, with the same float
// operations as the reference.
TEXT ·dequantQ5KAVX2(SB), NOSPLIT, $64-48
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
	VPBROADCASTD kq16<>(SB), Y7
	Q4D_SCALES(0, 32)
	Q5D_CHUNK(48, 16, 0, 128, VPSLLD, 4, VPSLLD, 3)
	Q5D_CHUNK(56, 24, 32, 160, VPSLLD, 4, VPSLLD, 3)
	Q5D_CHUNK(64, 32, 64, 192, VPSLLD, 4, VPSLLD, 3)
	Q5D_CHUNK(72, 40, 96, 224, VPSLLD, 4, VPSLLD, 3)
	Q4D_SCALES(8, 40)
	Q5D_CHUNK(80, 16, 256, 384, VPSLLD, 2, VPSLLD, 1)
	Q5D_CHUNK(88, 24, 288, 416, VPSLLD, 2, VPSLLD, 1)
	Q5D_CHUNK(96, 32, 320, 448, VPSLLD, 2, VPSLLD, 1)
	Q5D_CHUNK(104, 40, 352, 480, VPSLLD, 2, VPSLLD, 1)
	Q4D_SCALES(16, 48)
	Q5D_CHUNK(112, 16, 512, 640, VPSRLD, 0, VPSRLD, 1)
	Q5D_CHUNK(120, 24, 544, 672, VPSRLD, 0, VPSRLD, 1)
	Q5D_CHUNK(128, 32, 576, 704, VPSRLD, 0, VPSRLD, 1)
	Q5D_CHUNK(136, 40, 608, 736, VPSRLD, 0, VPSRLD, 1)
	Q4D_SCALES(24, 56)
	Q5D_CHUNK(144, 16, 768, 896, VPSRLD, 2, VPSRLD, 3)
	Q5D_CHUNK(152, 24, 800, 928, VPSRLD, 2, VPSRLD, 3)
	Q5D_CHUNK(160, 32, 832, 960, VPSRLD, 2, VPSRLD, 3)
	Q5D_CHUNK(168, 40, 864, 992, VPSRLD, 2, VPSRLD, 3)
	ADDQ $176, R8
	ADDQ $1024, DI
	DECQ CX
	JNZ  block

done:
	VZEROUPPER
	RET
