//go:build amd64 && !purego

// See kvq_fix_amd64.go for what each function computes.

#include "textflag.h"

// func kvqAddKeyFixes(dst *float32, dstride int, q *float32, nq, dim int, fixes *KVQKeyFix, n, lo, rows int) bool
TEXT ·kvqAddKeyFixes(SB), NOSPLIT, $0-73
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
	// R13 = the rows, R14 = the pairs: a fix's row − lo and pair must lie below them.
	MOVQ rows+64(FP), R13
	MOVQ R9, R14
	SHRQ $3, R14
	TESTQ CX, CX
	JEQ kdone

kfix:
	// AX = the score of the fix's row for vector 0, BX = its pair of vector 0, X0 = (A, B).
	MOVLQSX (R10), AX
	SUBQ R11, AX
	CMPQ AX, R13
	JAE kbad
	LEAQ (DI)(AX*4), AX
	MOVWQZX 4(R10), BX
	CMPQ BX, R14
	JAE kbad
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
	MOVB $1, ret+72(FP)
	RET

kbad:
	MOVB $0, ret+72(FP)
	RET

// func kvqAddValueFixes(out *float32, ostride int, w *float32, wstride, nq int, fixes *KVQValueFix, n, lo, rows, dim int) bool
TEXT ·kvqAddValueFixes(SB), NOSPLIT, $0-81
	MOVQ out+0(FP), DI
	MOVQ ostride+8(FP), DX
	SHLQ $2, DX
	MOVQ w+16(FP), SI
	MOVQ wstride+24(FP), R9
	SHLQ $2, R9
	MOVQ nq+32(FP), R8
	MOVQ fixes+40(FP), R10
	MOVQ n+48(FP), CX
	MOVQ lo+56(FP), R11
	// A fix's row − lo must lie below R13, its value below R14.
	MOVQ rows+64(FP), R13
	MOVQ dim+72(FP), R14
	TESTQ CX, CX
	JEQ vdone

vfix:
	// AX = the fix's row's weight for vector 0, BX = its value's sum for vector 0, X0 = A.
	MOVLQSX (R10), AX
	SUBQ R11, AX
	CMPQ AX, R13
	JAE vbad
	LEAQ (SI)(AX*4), AX
	MOVWQZX 4(R10), BX
	CMPQ BX, R14
	JAE vbad
	LEAQ (DI)(BX*4), BX
	VMOVSS 8(R10), X0
	CMPQ R8, $3
	JNE vgen
	// Three vectors (a GQA group of 3) without the loop.
	VMULSS (AX), X0, X1
	VADDSS (BX), X1, X1
	VMOVSS X1, (BX)
	VMULSS (AX)(R9*1), X0, X2
	VADDSS (BX)(DX*1), X2, X2
	VMOVSS X2, (BX)(DX*1)
	VMULSS (AX)(R9*2), X0, X3
	VADDSS (BX)(DX*2), X3, X3
	VMOVSS X3, (BX)(DX*2)
	JMP vnext

vgen:
	MOVQ R8, R12

vvec:
	VMULSS (AX), X0, X1
	VADDSS (BX), X1, X1
	VMOVSS X1, (BX)
	ADDQ R9, AX
	ADDQ DX, BX
	DECQ R12
	JNE vvec

vnext:
	ADDQ $12, R10
	DECQ CX
	JNE vfix

vdone:
	MOVB $1, ret+80(FP)
	RET

vbad:
	MOVB $0, ret+80(FP)
	RET
