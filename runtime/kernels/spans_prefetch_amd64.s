//go:build amd64 && !purego

#include "textflag.h"

// func prefetchLines(p unsafe.Pointer, n int)
TEXT ·prefetchLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	LEAQ (SI)(CX*1), DX
	ANDQ $-64, SI
loop:
	PREFETCHT0 (SI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   loop
	RET

// func prefetchLinesL2(p unsafe.Pointer, n int)
TEXT ·prefetchLinesL2(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	LEAQ (SI)(CX*1), DX
	ANDQ $-64, SI
loopL2:
	PREFETCHT1 (SI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   loopL2
	RET
