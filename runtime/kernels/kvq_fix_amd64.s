//go:build amd64 && !purego

// See kvq_fix_amd64.go for what each function computes.

#include "textflag.h"

// func kvqAddKeyFixes(dst *float32, dstride int, q *float32, nq, dim int, fixes *KVQKeyFix, n, lo int)
TEXT ·kvqAddKeyFixes(SB), NOSPLIT, $0-64
	MOVQ dst+0(FP), DI
	MOVQ dstride+8(FP), DX
	SHLQ $2, DX
	MOVQ q+16(FP), SI
	MOVQ nq+24(FP), R8
	MOVQ dim+32(FP), R9
	SHLQ $2, R9
	MOVQ fixes+40(FP), R10
	MOVQ n+48(FP), CX
	MOVQ lo+56(FP), R11
	TESTQ CX, CX
	JEQ kdone

kfix:
	// AX = the score of the fix's row for vector 0, BX = its pair of vector 0, X0 = (A, B).
	MOVLQSX (R10), AX
	SUBQ R11, AX
	LEAQ (DI)(AX*4), AX
	MOVWQZX 4(R10), BX
	LEAQ (SI)(BX*8), BX
	VMOVSD 8(R10), X0
	CMPQ R8, $3
	JNE kgen
	// Three vectors (a GQA group of 3) without the loop.
	VMOVSD (BX), X1
	VMULPS X0, X1, X1
	VMOVSHDUP X1, X2
	VADDSS X2, X1, X1
	VADDSS (AX), X1, X1
	VMOVSS X1, (AX)
	VMOVSD (BX)(R9*1), X3
	VMULPS X0, X3, X3
	VMOVSHDUP X3, X4
	VADDSS X4, X3, X3
	VADDSS (AX)(DX*1), X3, X3
	VMOVSS X3, (AX)(DX*1)
	VMOVSD (BX)(R9*2), X5
	VMULPS X0, X5, X5
	VMOVSHDUP X5, X6
	VADDSS X6, X5, X5
	VADDSS (AX)(DX*2), X5, X5
	VMOVSS X5, (AX)(DX*2)
	JMP knext

kgen:
	MOVQ R8, R12

kvec:
	VMOVSD (BX), X1
	VMULPS X0, X1, X1
	VMOVSHDUP X1, X2
	VADDSS X2, X1, X1
	VADDSS (AX), X1, X1
	VMOVSS X1, (AX)
	ADDQ DX, AX
	ADDQ R9, BX
	DECQ R12
	JNE kvec

knext:
	ADDQ $16, R10
	DECQ CX
	JNE kfix

kdone:
	RET
