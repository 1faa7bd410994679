//go:build amd64 && !purego

// Activation quantization to blocks of 32 int8; q8act_amd64.go states what it computes.

#include "textflag.h"

// dword order that undoes the lane interleaving of VPACKSSDW + VPACKSSWB
DATA q8actPerm<>+0(SB)/4, $0
DATA q8actPerm<>+4(SB)/4, $4
DATA q8actPerm<>+8(SB)/4, $1
DATA q8actPerm<>+12(SB)/4, $5
DATA q8actPerm<>+16(SB)/4, $2
DATA q8actPerm<>+20(SB)/4, $6
DATA q8actPerm<>+24(SB)/4, $3
DATA q8actPerm<>+28(SB)/4, $7
GLOBL q8actPerm<>(SB), RODATA|NOPTR, $32

// func q8ActAVX2(q *int8, scale *float32, sum *int32, x *float32, nb int)
TEXT ·q8ActAVX2(SB), NOSPLIT, $0-40
	MOVQ q+0(FP), DI
	MOVQ scale+8(FP), R8
	MOVQ sum+16(FP), R9
	MOVQ x+24(FP), SI
	MOVQ nb+32(FP), CX
	TESTQ CX, CX
	JLE done
	MOVL $0x7fffffff, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15 // |x| mask
	MOVL $0x42fe0000, AX  // 127.0
	MOVQ AX, X14
	MOVL $0x3f800000, AX  // 1.0
	MOVQ AX, X13
	VMOVDQU q8actPerm<>(SB), Y12
	VXORPS X11, X11, X11

loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VANDPS Y15, Y0, Y4
	VANDPS Y15, Y1, Y5
	VANDPS Y15, Y2, Y6
	VANDPS Y15, Y3, Y7
	VMAXPS Y5, Y4, Y4
	VMAXPS Y7, Y6, Y6
	VMAXPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0x4e, X4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0xb1, X4, X5
	VMAXPS X5, X4, X4     // every lane: amax
	VDIVSS X14, X4, X5    // d = amax/127
	VMOVSS X5, (R8)
	VDIVSS X5, X13, X6    // 1/d
	VCMPSS $4, X11, X5, X7 // d != 0
	VANDPS X7, X6, X6     // id = 1/d, or 0
	VBROADCASTSS X6, Y6
	VMULPS Y6, Y0, Y0
	VMULPS Y6, Y1, Y1
	VMULPS Y6, Y2, Y2
	VMULPS Y6, Y3, Y3
	VCVTPS2DQ Y0, Y0      // round to nearest even
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	VPADDD Y1, Y0, Y4
	VPADDD Y3, Y2, Y5
	VPADDD Y5, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPADDD X5, X4, X4
	VPSHUFD $0x4e, X4, X5
	VPADDD X5, X4, X4
	VPSHUFD $0xb1, X4, X5
	VPADDD X5, X4, X4
	VMOVD X4, (R9)
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y12, Y0
	VMOVDQU Y0, (DI)
	ADDQ $128, SI
	ADDQ $32, DI
	ADDQ $4, R8
	ADDQ $4, R9
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET
