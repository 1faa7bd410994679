//go:build amd64 && !purego

#include "textflag.h"

DATA kqPerm<>+0(SB)/4, $0
DATA kqPerm<>+4(SB)/4, $4
DATA kqPerm<>+8(SB)/4, $1
DATA kqPerm<>+12(SB)/4, $5
DATA kqPerm<>+16(SB)/4, $2
DATA kqPerm<>+20(SB)/4, $6
DATA kqPerm<>+24(SB)/4, $3
DATA kqPerm<>+28(SB)/4, $7
GLOBL kqPerm<>(SB), RODATA|NOPTR, $32

// KQ8_AMAX folds |x| of the 32 floats at off(SI) into Y0..Y3.
#define KQ8_AMAX(off) \
	VANDPS off(SI), Y15, Y4 \
	VMAXPS Y4, Y0, Y0 \
	VANDPS off+32(SI), Y15, Y5 \
	VMAXPS Y5, Y1, Y1 \
	VANDPS off+64(SI), Y15, Y6 \
	VMAXPS Y6, Y2, Y2 \
	VANDPS off+96(SI), Y15, Y7 \
	VMAXPS Y7, Y3, Y3

// KQ8_Q32 quantizes the 32 floats at off(SI) with the factor in Y0, stores the int8
// values at qoff(DI), and leaves in DST their sums of 4 as 8 int32.
#define KQ8_Q32(off, qoff, DST) \
	VMULPS off(SI), Y0, Y4 \
	VMULPS off+32(SI), Y0, Y5 \
	VMULPS off+64(SI), Y0, Y6 \
	VMULPS off+96(SI), Y0, Y7 \
	VCVTPS2DQ Y4, Y4 \
	VCVTPS2DQ Y5, Y5 \
	VCVTPS2DQ Y6, Y6 \
	VCVTPS2DQ Y7, Y7 \
	VPACKSSDW Y5, Y4, Y4 \
	VPACKSSDW Y7, Y6, Y6 \
	VPACKSSWB Y6, Y4, Y4 \
	VPERMD Y4, Y14, Y4 \
	VMOVDQU Y4, qoff(DI) \
	VPMADDUBSW Y4, Y13, Y4 \
	VPMADDWD Y12, Y4, DST

// func quantizeQ8KAVX2(q []int8, scale []float32, sum []int16, x []float32)
TEXT ·quantizeQ8KAVX2(SB), NOSPLIT, $0-96
	MOVQ q_base+0(FP), DI
	MOVQ scale_base+24(FP), R8
	MOVQ scale_len+32(FP), CX
	MOVQ sum_base+48(FP), R9
	MOVQ x_base+72(FP), SI
	TESTQ CX, CX
	JEQ  done
	MOVL $0x7fffffff, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, Y15
	VMOVDQU kqPerm<>(SB), Y14
	MOVL $0x01010101, AX
	VMOVQ AX, X13
	VPBROADCASTD X13, Y13
	MOVL $0x00010001, AX
	VMOVQ AX, X12
	VPBROADCASTD X12, Y12
	MOVL $0x42fe0000, AX // 127.0
	VMOVQ AX, X11

block:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	KQ8_AMAX(0)
	KQ8_AMAX(128)
	KQ8_AMAX(256)
	KQ8_AMAX(384)
	KQ8_AMAX(512)
	KQ8_AMAX(640)
	KQ8_AMAX(768)
	KQ8_AMAX(896)
	VMAXPS Y1, Y0, Y0
	VMAXPS Y3, Y2, Y2
	VMAXPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4E, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xB1, X0, X1
	VMAXSS X1, X0, X0
	// d = amax/127; the factor is 1/d, or 0 when d is below 2^-126 (zero, subnormal or
	// NaN), where 1/d would overflow.
	VDIVSS X11, X0, X0
	VMOVSS X0, (R8)
	MOVL $0x00800000, AX // 2^-126
	VMOVQ AX, X1
	VUCOMISS X1, X0
	JAE  invert
	VXORPS X0, X0, X0
	JMP  scaled

invert:
	MOVL $0x3f800000, AX // 1.0
	VMOVQ AX, X1
	VDIVSS X0, X1, X0

scaled:
	VBROADCASTSS X0, Y0
	KQ8_Q32(0, 0, Y8)
	KQ8_Q32(128, 32, Y9)
	VPHADDD Y9, Y8, Y8
	KQ8_Q32(256, 64, Y9)
	KQ8_Q32(384, 96, Y10)
	VPHADDD Y10, Y9, Y9
	VPHADDD Y9, Y8, Y8
	VPERMD Y8, Y14, Y8
	KQ8_Q32(512, 128, Y9)
	KQ8_Q32(640, 160, Y10)
	VPHADDD Y10, Y9, Y9
	KQ8_Q32(768, 192, Y10)
	KQ8_Q32(896, 224, Y1)
	VPHADDD Y1, Y10, Y10
	VPHADDD Y10, Y9, Y9
	VPERMD Y9, Y14, Y9
	VPACKSSDW Y9, Y8, Y8
	VPERMQ $0xD8, Y8, Y8
	VMOVDQU Y8, (R9)
	ADDQ $1024, SI
	ADDQ $256, DI
	ADDQ $4, R8
	ADDQ $32, R9
	DECQ CX
	JNZ  block

done:
	VZEROUPPER
	RET
