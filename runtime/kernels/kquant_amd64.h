// Shared by the Q4_K and Q5_K kernels (included by q4_k_amd64.s and q5_k_amd64.s).

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
