//go:build amd64 && !purego

#include "textflag.h"

// Q6_K kernels. Each half of a super-block (128 values) decodes to four vectors of 32
// unsigned 6-bit values v0..v3 (values 0-31, 32-63, 64-95, 96-127 of the half):
//   v0 = ql[0:32]&15  | (qh<<4)&0x30     v1 = ql[32:64]&15  | (qh<<2)&0x30
//   v2 = ql[0:32]>>4  | qh&0x30          v3 = ql[32:64]>>4  | (qh>>2)&0x30
// Each vector covers two scales (16 values each). The integer sum of a super-block is
// Σ_k sc[k]·Σ q·x - 32·Σ_k sc[k]·xsum[k]; it is converted to float once per super-block.

// Per-vector scale selection (both kernels): with the half's 8 scales as words in
// both 128-bit lanes, index k picks word 2k in the low lane and word 2k+1 in the high
// lane, repeated 8 times (the VPMADDUBSW pairs of 16 values share one scale).
DATA kq6Shuf<>+0(SB)/8, $0x0100010001000100
DATA kq6Shuf<>+8(SB)/8, $0x0100010001000100
DATA kq6Shuf<>+16(SB)/8, $0x0302030203020302
DATA kq6Shuf<>+24(SB)/8, $0x0302030203020302
DATA kq6Shuf<>+32(SB)/8, $0x0504050405040504
DATA kq6Shuf<>+40(SB)/8, $0x0504050405040504
DATA kq6Shuf<>+48(SB)/8, $0x0706070607060706
DATA kq6Shuf<>+56(SB)/8, $0x0706070607060706
DATA kq6Shuf<>+64(SB)/8, $0x0908090809080908
DATA kq6Shuf<>+72(SB)/8, $0x0908090809080908
DATA kq6Shuf<>+80(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA kq6Shuf<>+88(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA kq6Shuf<>+96(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA kq6Shuf<>+104(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA kq6Shuf<>+112(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA kq6Shuf<>+120(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL kq6Shuf<>(SB), RODATA|NOPTR, $128

// KQ6_D adds Y10 (int32 sums), scaled by d*xscale of the block at R8, to Y0.
#define KQ6_D \
	VCVTDQ2PS Y10, Y10 \
	VPBROADCASTW 208(R8), X6 \
	VCVTPH2PS X6, Y6 \
	VBROADCASTSS (R10), Y7 \
	VMULPS Y7, Y6, Y6 \
	VFMADD231PS Y10, Y6, Y0

// KQ6_HSUM stores at (AX) the sum of the 8 floats of Y0.
#define KQ6_HSUM \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0x4E, X0, X1 \
	VADDPS X1, X0, X0 \
	VPERMILPS $0xB1, X0, X1 \
	VADDSS X1, X0, X0 \
	VMOVSS X0, (AX)

// Q6_VNNI_VEC adds to ACC the products of the 32 values in V against x at xoff(DI),
// scaled by the words of Y8 that index vector IDX picks (VPMADDUBSW pairs of 16 values
// share one scale). One accumulator per vector keeps the dependency chains short.
#define Q6_VNNI_VEC(V, xoff, IDX, T, S, ACC) \
	VPMADDUBSW xoff(DI), V, T \
	VPSHUFB IDX, Y8, S \
	VPDPWSSD S, T, ACC

// Q6_VNNI_HALF decodes half h of the block at R8 (ql at qloff, qh at qhoff) and adds its
// products with x at xoff(DI) to Y22, Y23, Y28, Y29; PERM selects the half's scales.
#define Q6_VNNI_HALF(qloff, qhoff, xoff, PERM) \
	VPERMQ PERM, Y4, Y8 \
	VMOVDQU32 qloff(R8), Y11 \
	VMOVDQU32 qloff+32(R8), Y12 \
	VMOVDQU32 qhoff(R8), Y13 \
	VPSLLW $4, Y13, Y14 \
	VPANDD Y30, Y14, Y14 \
	VPTERNLOGD $0xF8, Y31, Y11, Y14 \
	VPSLLW $2, Y13, Y15 \
	VPANDD Y30, Y15, Y15 \
	VPTERNLOGD $0xF8, Y31, Y12, Y15 \
	VPSRLW $4, Y11, Y11 \
	VPANDD Y30, Y13, Y16 \
	VPTERNLOGD $0xF8, Y31, Y11, Y16 \
	VPSRLW $4, Y12, Y12 \
	VPSRLW $2, Y13, Y17 \
	VPANDD Y30, Y17, Y17 \
	VPTERNLOGD $0xF8, Y31, Y12, Y17 \
	Q6_VNNI_VEC(Y14, xoff, Y24, Y18, Y9, Y22) \
	Q6_VNNI_VEC(Y15, xoff+32, Y25, Y19, Y5, Y23) \
	Q6_VNNI_VEC(Y16, xoff+64, Y26, Y20, Y6, Y28) \
	Q6_VNNI_VEC(Y17, xoff+96, Y27, Y21, Y7, Y29)

// func dotQ6KVNNI(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)
TEXT ·dotQ6KVNNI(SB), NOSPLIT, $0-136
	MOVQ dst_base+0(FP), AX
	MOVQ dst_len+8(FP), CX
	MOVQ w_base+24(FP), SI
	MOVQ rowBytes+48(FP), DX
	TESTQ CX, CX
	JEQ  done
	MOVL $0x0f0f0f0f, R13
	VPBROADCASTD R13, Y31
	MOVL $0x30303030, R13
	VPBROADCASTD R13, Y30
	VMOVDQU32 kq6Shuf<>+0(SB), Y24
	VMOVDQU32 kq6Shuf<>+32(SB), Y25
	VMOVDQU32 kq6Shuf<>+64(SB), Y26
	VMOVDQU32 kq6Shuf<>+96(SB), Y27

row:
	MOVQ SI, R8
	MOVQ x_base+64(FP), DI
	MOVQ xscale_base+88(FP), R10
	MOVQ xsum_base+112(FP), R11
	MOVQ nb+56(FP), R12
	VPXORD Y0, Y0, Y0

block:
	// Y10 = -32·Σ sc[k]·xsum[k] spread over 8 lanes; Y4 = the 16 scales as words.
	VPMOVSXBW 192(R8), Y4
	VPMADDWD (R11), Y4, Y7
	VPSLLD $5, Y7, Y7
	VPXORD Y10, Y10, Y10
	VPSUBD Y7, Y10, Y10
	VPXORD Y22, Y22, Y22
	VPXORD Y23, Y23, Y23
	VPXORD Y28, Y28, Y28
	VPXORD Y29, Y29, Y29
	Q6_VNNI_HALF(0, 128, 0, $0x44)
	Q6_VNNI_HALF(64, 160, 128, $0xEE)
	VPADDD Y22, Y23, Y22
	VPADDD Y28, Y29, Y28
	VPADDD Y22, Y10, Y10
	VPADDD Y28, Y10, Y10
	KQ6_D
	ADDQ $210, R8
	ADDQ $256, DI
	ADDQ $4, R10
	ADDQ $32, R11
	DECQ R12
	JNZ  block

	KQ6_HSUM
	ADDQ $4, AX
	ADDQ DX, SI
	DECQ CX
	JNZ  row

done:
	VZEROUPPER
	RET


// Q6_AVX2_VEC adds to Y9 the products of the 32 values in V against x at xoff(DI), with
// the scales of index vector IDX picked from Y8.
#define Q6_AVX2_VEC(V, xoff, IDX) \
	VPMADDUBSW xoff(DI), V, V \
	VPSHUFB IDX, Y8, Y7 \
	VPMADDWD Y7, V, V \
	VPADDD V, Y9, Y9

// Q6_AVX2_HALF is Q6_VNNI_HALF for AVX2; PERM selects the half's scales into Y8.
#define Q6_AVX2_HALF(qloff, qhoff, xoff, PERM) \
	VPERMQ PERM, Y4, Y8 \
	VMOVDQU qloff(R8), Y1 \
	VMOVDQU qloff+32(R8), Y2 \
	VMOVDQU qhoff(R8), Y3 \
	VPSLLW $4, Y3, Y5 \
	VPAND Y14, Y5, Y5 \
	VPAND Y15, Y1, Y6 \
	VPOR Y6, Y5, Y5 \
	Q6_AVX2_VEC(Y5, xoff, Y10) \
	VPSLLW $2, Y3, Y5 \
	VPAND Y14, Y5, Y5 \
	VPAND Y15, Y2, Y6 \
	VPOR Y6, Y5, Y5 \
	Q6_AVX2_VEC(Y5, xoff+32, Y11) \
	VPSRLW $4, Y1, Y1 \
	VPAND Y15, Y1, Y1 \
	VPAND Y14, Y3, Y5 \
	VPOR Y1, Y5, Y5 \
	Q6_AVX2_VEC(Y5, xoff+64, Y12) \
	VPSRLW $4, Y2, Y2 \
	VPAND Y15, Y2, Y2 \
	VPSRLW $2, Y3, Y5 \
	VPAND Y14, Y5, Y5 \
	VPOR Y2, Y5, Y5 \
	Q6_AVX2_VEC(Y5, xoff+96, Y13)

// func dotQ6KAVX2(dst []float32, w []byte, rowBytes, nb int, x []int8, xscale []float32, xsum []int16)
TEXT ·dotQ6KAVX2(SB), NOSPLIT, $0-136
	MOVQ dst_base+0(FP), AX
	MOVQ dst_len+8(FP), CX
	MOVQ w_base+24(FP), SI
	MOVQ rowBytes+48(FP), DX
	TESTQ CX, CX
	JEQ  done
	MOVL $0x0f0f0f0f, R13
	VMOVQ R13, X15
	VPBROADCASTD X15, Y15
	MOVL $0x30303030, R13
	VMOVQ R13, X14
	VPBROADCASTD X14, Y14

row:
	MOVQ SI, R8
	MOVQ x_base+64(FP), DI
	MOVQ xscale_base+88(FP), R10
	MOVQ xsum_base+112(FP), R11
	MOVQ nb+56(FP), R12
	VPXOR Y0, Y0, Y0

block:
	VPMOVSXBW 192(R8), Y4
	VPMADDWD (R11), Y4, Y7
	VPSLLD $5, Y7, Y7
	VPXOR Y9, Y9, Y9
	VPSUBD Y7, Y9, Y9
	// The four index vectors of the first half, then of the second.
	VMOVDQU kq6Shuf<>+0(SB), Y10
	VMOVDQU kq6Shuf<>+32(SB), Y11
	VMOVDQU kq6Shuf<>+64(SB), Y12
	VMOVDQU kq6Shuf<>+96(SB), Y13
	Q6_AVX2_HALF(0, 128, 0, $0x44)
	Q6_AVX2_HALF(64, 160, 128, $0xEE)
	VMOVDQU Y9, Y10
	KQ6_D
	ADDQ $210, R8
	ADDQ $256, DI
	ADDQ $4, R10
	ADDQ $32, R11
	DECQ R12
	JNZ  block

	KQ6_HSUM
	ADDQ $4, AX
	ADDQ DX, SI
	DECQ CX
	JNZ  row

done:
	VZEROUPPER
	RET

// Q6D_OUT converts the 8 unsigned 6-bit values in V to d·sc·(q-32), with d·sc at
// soff(SP), and stores them at yoff(DI).
#define Q6D_OUT(V, yoff, soff) \
	VPSUBD Y13, V, V \
	VCVTDQ2PS V, V \
	VBROADCASTSS soff(SP), Y7 \
	VMULPS Y7, V, V \
	VMOVUPS V, yoff(DI)

// Q6D_CHUNK decodes values l = 8c..8c+7 of the four quarters of a half: ql[l] at
// a(R8), ql[32+l] at b(R8), qh[l] at h(R8); the first output goes to yoff(DI) (the
// others 128, 256 and 384 bytes on) and its scale is at soff(SP) (the others 8, 16
// and 24 bytes on).
#define Q6D_CHUNK(a, b, h, yoff, soff) \
	VPMOVZXBD a(R8), Y0 \
	VPMOVZXBD b(R8), Y1 \
	VPMOVZXBD h(R8), Y2 \
	VPSLLD $4, Y2, Y3 \
	VPAND Y14, Y3, Y3 \
	VPAND Y15, Y0, Y4 \
	VPOR Y4, Y3, Y3 \
	Q6D_OUT(Y3, yoff, soff) \
	VPSLLD $2, Y2, Y3 \
	VPAND Y14, Y3, Y3 \
	VPAND Y15, Y1, Y4 \
	VPOR Y4, Y3, Y3 \
	Q6D_OUT(Y3, yoff+128, soff+8) \
	VPAND Y14, Y2, Y3 \
	VPSRLD $4, Y0, Y0 \
	VPOR Y0, Y3, Y3 \
	Q6D_OUT(Y3, yoff+256, soff+16) \
	VPSRLD $2, Y2, Y3 \
	VPAND Y14, Y3, Y3 \
	VPSRLD $4, Y1, Y1 \
	VPOR Y1, Y3, Y3 \
	Q6D_OUT(Y3, yoff+384, soff+24)

// func dequantQ6KAVX2(dst []float32, src []byte)
//
// dequantQ6KAVX2 is dequantQ6K for len(dst)/256 super-blocks, with the same float
// operations (d·sc rounded, then times q-32).
TEXT ·dequantQ6KAVX2(SB), NOSPLIT, $64-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), R8
	SHRQ $8, CX
	JEQ  done
	MOVL $15, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, Y15
	MOVL $48, AX
	VMOVQ AX, X14
	VPBROADCASTD X14, Y14
	MOVL $32, AX
	VMOVQ AX, X13
	VPBROADCASTD X13, Y13

block:
	VPMOVSXBD 192(R8), Y4
	VPMOVSXBD 200(R8), Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VPBROADCASTW 208(R8), X6
	VCVTPH2PS X6, Y6
	VMULPS Y6, Y4, Y4
	VMULPS Y6, Y5, Y5
	VMOVUPS Y4, (SP)
	VMOVUPS Y5, 32(SP)
	Q6D_CHUNK(0, 32, 128, 0, 0)
	Q6D_CHUNK(8, 40, 136, 32, 0)
	Q6D_CHUNK(16, 48, 144, 64, 4)
	Q6D_CHUNK(24, 56, 152, 96, 4)
	Q6D_CHUNK(64, 96, 160, 512, 32)
	Q6D_CHUNK(72, 104, 168, 544, 32)
	Q6D_CHUNK(80, 112, 176, 576, 36)
	Q6D_CHUNK(88, 120, 184, 608, 36)
	ADDQ $210, R8
	ADDQ $1024, DI
	DECQ CX
	JNZ  block

done:
	VZEROUPPER
	RET
