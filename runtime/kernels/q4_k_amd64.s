//go:build amd64 && !purego

#include "textflag.h"

// Constants for decoding the 12-byte scale field of Q4_K/Q5_K (scaleMinK4) in a vector.
// With the block's first 16 bytes as dwords [d|dmin, w0, w1, w2]:
//   sc[0:4] = w0 & 0x3f..        sc[4:8] = w2 & 0x0f.. | (w0 >> 2) & 0x30..
//   m[0:4]  = w1 & 0x3f..        m[4:8]  = (w2 >> 4) & 0x0f.. | (w1 >> 2) & 0x30..
// A = shuffle to [w0, w2, w1, w2], shifted right by [0, 0, 0, 4], masked by kqMaskA;
// B = shuffle to [w0, w0, w1, w1], shifted right by 2, masked by kqMaskB; A|B is then
// [sc0..sc7, m0..m7] as bytes.
DATA kqShiftA<>+0(SB)/4, $0
DATA kqShiftA<>+4(SB)/4, $0
DATA kqShiftA<>+8(SB)/4, $0
DATA kqShiftA<>+12(SB)/4, $4
GLOBL kqShiftA<>(SB), RODATA|NOPTR, $16

DATA kqMaskA<>+0(SB)/4, $0x3f3f3f3f
DATA kqMaskA<>+4(SB)/4, $0x0f0f0f0f
DATA kqMaskA<>+8(SB)/4, $0x3f3f3f3f
DATA kqMaskA<>+12(SB)/4, $0x0f0f0f0f
GLOBL kqMaskA<>(SB), RODATA|NOPTR, $16

DATA kqMaskB<>+0(SB)/4, $0
DATA kqMaskB<>+4(SB)/4, $0x30303030
DATA kqMaskB<>+8(SB)/4, $0
DATA kqMaskB<>+12(SB)/4, $0x30303030
GLOBL kqMaskB<>(SB), RODATA|NOPTR, $16

// KQ_SCALES decodes the scale field of the block at R8 into X3 = [sc0..sc7, m0..m7]
// bytes, using the constants in SA, MA, MB and the AND instruction AND (VPANDD when
// they are in X16-X31). Clobbers X4.
#define KQ_SCALES(SA, MA, MB, AND) \
	VMOVDQU (R8), X4 \
	VPSHUFD $0xED, X4, X3 \
	VPSRLVD SA, X3, X3 \
	AND MA, X3, X3 \
	VPSHUFD $0xA5, X4, X4 \
	VPSRLD $2, X4, X4 \
	AND MB, X4, X4 \
	VPOR X4, X3, X3

// KQ_MINS computes in Y5 the 8 floats m[j]*(xsum[2j]+xsum[2j+1]) from X3 (KQ_SCALES)
// and the 16 int16 activation sums at R11.
#define KQ_MINS \
	VPUNPCKHBW X3, X3, X5 \
	VPMOVZXBW X5, Y5 \
	VPMADDWD (R11), Y5, Y5 \
	VCVTDQ2PS Y5, Y5

// KQ_DDMIN sets Y6 to 8 copies of d*xscale and Y7 to 8 copies of dmin*xscale for the
// block at R8 and the activation scale at R10.
#define KQ_DDMIN \
	VPBROADCASTD (R8), X6 \
	VCVTPH2PS X6, Y6 \
	VBROADCASTSS (R10), Y7 \
	VMULPS Y7, Y6, Y6 \
	VSHUFPS $0x55, Y6, Y6, Y7 \
	VSHUFPS $0x00, Y6, Y6, Y6

// KQ_HSUM stores at (AX) the sum of the 8 floats of Y0 minus those of Y1.
#define KQ_HSUM \
	VSUBPS Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0x4E, X0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0xB1, X0, X1 \
	VADDSS X1, X0, X0 \
	VMOVSS X0, (AX)

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
	MOVQ R13, X15
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
