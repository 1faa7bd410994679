//go:build ignore

// q8_0_gen.go writes the assembly of the Q4_0, Q5_0, Q4_1 and Q5_1 decode products and
// dequantizers (q4_0_amd64.s, q5_0_amd64.s, q4_1_amd64.s, q5_1_amd64.s): one loop skeleton
// per row-group size, with each format's row macro. Run it with go generate (see
// q4_0_amd64.go) after changing it; the Q8_0 kernels in q8_0_amd64.s are written by hand.
package main

import (
	"fmt"
	"log"
	"os"
	"strings"
)

func main() {
	for _, f := range []string{"Q4_0", "Q5_0", "Q4_1", "Q5_1"} {
		name := strings.ToLower(f) + "_amd64.s"
		if err := os.WriteFile(name, []byte(generate(f)), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// asm accumulates assembly lines.
type asm struct{ strings.Builder }

// l writes one line (a tab-indented instruction unless it is a label or empty).
func (a *asm) l(format string, args ...any) {
	fmt.Fprintf(a, format, args...)
	a.WriteByte('\n')
}

// i writes one instruction line.
func (a *asm) i(format string, args ...any) { a.l("\t"+format, args...) }

const args = "(dst *float32, rows int, w *byte, rowBytes int, x *int8, xs *float32, xsum *int32)"

// kernel4 writes a function that runs row over groups of four rows, then over the rows
// left one at a time. shared loads the activation block (x at (R13)) before the rows.
func kernel4(a *asm, name string, prologue, shared []string, row string, blockBytes int) {
	a.l("// func %s%s", name, args)
	a.l("TEXT ·%s(SB), NOSPLIT, $0-56", name)
	a.i("MOVQ dst+0(FP), BX")
	a.i("MOVQ rows+8(FP), R9")
	a.i("MOVQ w+16(FP), SI")
	a.i("MOVQ rowBytes+24(FP), DX")
	a.i("MOVQ x+32(FP), DI")
	a.i("MOVQ xs+40(FP), R8")
	a.i("MOVQ xsum+48(FP), CX")
	for _, p := range prologue {
		a.i("%s", p)
	}
	a.l("")
	a.l("%s_group4:", name)
	a.i("CMPQ R9, $4")
	a.i("JLT %s_tail", name)
	a.i("LEAQ (SI)(DX*1), R10")
	a.i("LEAQ (SI)(DX*2), R11")
	a.i("LEAQ (R10)(DX*2), R12")
	for r := 6; r <= 9; r++ {
		a.i("VXORPS Y%d, Y%d, Y%d", r, r, r)
	}
	a.i("XORQ AX, AX")
	a.i("MOVQ DI, R13")
	a.i("XORQ R14, R14")
	a.l("")
	a.l("%s_block4:", name)
	a.i("LEAQ (SI)(AX*4), R15 // prefetch two groups ahead, at the rate the group is read")
	a.i("PREFETCHT0 (R15)(DX*8)")
	a.i("PREFETCHT0 64(R15)(DX*8)")
	for _, s := range shared {
		a.i("%s", s)
	}
	for r, base := range []string{"SI", "R10", "R11", "R12"} {
		a.i("%s(%s, Y%d)", row, base, 6+r)
	}
	a.i("ADDQ $%d, AX", blockBytes)
	a.i("ADDQ $32, R13")
	a.i("ADDQ $4, R14")
	a.i("CMPQ AX, DX")
	a.i("JLT %s_block4", name)
	a.i("VHADDPS Y7, Y6, Y6")
	a.i("VHADDPS Y9, Y8, Y8")
	a.i("VHADDPS Y8, Y6, Y6")
	a.i("VEXTRACTF128 $1, Y6, X7")
	a.i("VADDPS X7, X6, X6")
	a.i("VMOVUPS X6, (BX)")
	a.i("ADDQ $16, BX")
	a.i("LEAQ (SI)(DX*4), SI")
	a.i("SUBQ $4, R9")
	a.i("JMP %s_group4", name)
	a.l("")
	a.l("%s_tail:", name)
	a.i("TESTQ R9, R9")
	a.i("JLE %s_done", name)
	a.i("VXORPS Y6, Y6, Y6")
	a.i("XORQ AX, AX")
	a.i("MOVQ DI, R13")
	a.i("XORQ R14, R14")
	a.l("")
	a.l("%s_block1:", name)
	for _, s := range shared {
		a.i("%s", s)
	}
	a.i("%s(SI, Y6)", row)
	a.i("ADDQ $%d, AX", blockBytes)
	a.i("ADDQ $32, R13")
	a.i("ADDQ $4, R14")
	a.i("CMPQ AX, DX")
	a.i("JLT %s_block1", name)
	a.i("VEXTRACTF128 $1, Y6, X7")
	a.i("VADDPS X7, X6, X6")
	a.i("VHADDPS X6, X6, X6")
	a.i("VHADDPS X6, X6, X6")
	a.i("VMOVSS X6, (BX)")
	a.i("ADDQ $4, BX")
	a.i("ADDQ DX, SI")
	a.i("DECQ R9")
	a.i("JMP %s_tail", name)
	a.l("")
	a.l("%s_done:", name)
	a.i("VZEROUPPER")
	a.i("RET")
}

// kernel8 writes a function that runs row over groups of eight rows (rows must be a
// multiple of 8); the activation block is addressed by the block index R14.
func kernel8(a *asm, name string, prologue, shared []string, row string, blockBytes int) {
	a.l("// func %s%s", name, args)
	a.l("TEXT ·%s(SB), NOSPLIT, $16-56", name)
	a.i("MOVQ dst+0(FP), BX")
	a.i("MOVQ rows+8(FP), R9")
	a.i("MOVQ BX, dstp-8(SP)")
	a.i("MOVQ R9, left-16(SP)")
	a.i("MOVQ w+16(FP), SI")
	a.i("MOVQ rowBytes+24(FP), DX")
	a.i("MOVQ x+32(FP), DI")
	a.i("MOVQ xs+40(FP), R8")
	a.i("MOVQ xsum+48(FP), CX")
	for _, p := range prologue {
		a.i("%s", p)
	}
	a.l("")
	a.l("%s_group8:", name)
	a.i("CMPQ left-16(SP), $8")
	a.i("JLT %s_done", name)
	for _, lea := range [][2]string{{"(SI)(DX*1)", "R10"}, {"(SI)(DX*2)", "R11"}, {"(R10)(DX*2)", "R12"},
		{"(SI)(DX*4)", "R13"}, {"(R10)(DX*4)", "BX"}, {"(R11)(DX*4)", "R9"}, {"(R12)(DX*4)", "R15"}} {
		a.i("LEAQ %s, %s", lea[0], lea[1])
	}
	for r := 6; r <= 13; r++ {
		a.i("VXORPS Y%d, Y%d, Y%d", r, r, r)
	}
	a.i("XORQ AX, AX")
	a.i("XORQ R14, R14")
	a.l("")
	a.l("%s_block8:", name)
	a.i("// prefetch 12 KB ahead of the group's linear position, at the rate it is read")
	for off := 0; off < 8*blockBytes; off += 64 {
		a.i("PREFETCHT0 %d(SI)(AX*8)", 12288+off)
	}
	for _, s := range shared {
		a.i("%s", strings.ReplaceAll(s, "(R13)", "(DI)(R14*8)"))
	}
	for r, base := range []string{"SI", "R10", "R11", "R12", "R13", "BX", "R9", "R15"} {
		a.i("%s(%s, Y%d)", row, base, 6+r)
	}
	a.i("ADDQ $%d, AX", blockBytes)
	a.i("ADDQ $4, R14")
	a.i("CMPQ AX, DX")
	a.i("JLT %s_block8", name)
	a.i("VHADDPS Y7, Y6, Y6")
	a.i("VHADDPS Y9, Y8, Y8")
	a.i("VHADDPS Y11, Y10, Y10")
	a.i("VHADDPS Y13, Y12, Y12")
	a.i("VHADDPS Y8, Y6, Y6")
	a.i("VHADDPS Y12, Y10, Y10")
	a.i("VPERM2F128 $0x20, Y10, Y6, Y7")
	a.i("VPERM2F128 $0x31, Y10, Y6, Y8")
	a.i("VADDPS Y8, Y7, Y7")
	a.i("MOVQ dstp-8(SP), BX")
	a.i("VMOVUPS Y7, (BX)")
	a.i("ADDQ $32, BX")
	a.i("MOVQ BX, dstp-8(SP)")
	a.i("SUBQ $8, left-16(SP)")
	a.i("LEAQ (SI)(DX*8), SI")
	a.i("JMP %s_group8", name)
	a.l("")
	a.l("%s_done:", name)
	a.i("VZEROUPPER")
	a.i("RET")
}

const header = `// Code generated by q8_0_gen.go; DO NOT EDIT.

//go:build amd64 && !purego

// %s kernels; %s_amd64.go states what each function computes. The AVX2 and the
// AVX-512 VNNI functions share one loop skeleton and differ in their row macro. Register
// use: AX is the byte offset of the current block within a row, SI R10 R11 R12 the four
// rows of a group (BX dst, R9 rows left, DX rowBytes), R13 and R14 cursors over the
// activation blocks and over their scales and sums, R15 the prefetch pointer; Y6-Y9
// accumulate the four rows. The eight-row VNNI function addresses the activation by the
// block index R14, keeps dst and the row count on the stack and rows 4-7 in R13 BX R9 R15.

#include "textflag.h"
`

var avx2Prologue = []string{
	"MOVL $0x00010001, AX",
	"MOVQ AX, X15",
	"VPBROADCASTD X15, Y15 // int16 ones for VPMADDWD",
	"MOVL $0x0f0f0f0f, AX",
	"MOVQ AX, X14",
	"VPBROADCASTD X14, Y14 // low-nibble mask",
}

var vnniPrologue = []string{
	"MOVL $0x0f0f0f0f, AX",
	"VPBROADCASTD AX, Y26 // low-nibble mask",
	"MOVL $0x10101010, AX",
	"VPBROADCASTD AX, Y27 // fifth bit",
	"VPXORD Y29, Y29, Y29",
	"MOVL $0x00040004, AX",
	"VPBROADCASTD AX, Y24",
	"VINSERTI32X4 $0, X29, Y24, Y24 // word shifts: 0 for the low nibbles, 4 for the high",
}

// fifthBitTables are the AVX2 tables that spread qh over the 32 lanes: byte j/8 of qh to
// byte j, then the bit of each lane.
func fifthBitTables(a *asm, prefix string) {
	a.l("")
	a.l("// qh bytes to lanes (byte j/8 of qh to byte j) and the bit of each lane")
	for i, v := range []string{"0000000000000000", "0101010101010101", "0202020202020202", "0303030303030303"} {
		a.l("DATA %sSpread<>+%d(SB)/8, $0x%s", prefix, 8*i, v)
	}
	a.l("GLOBL %sSpread<>(SB), RODATA|NOPTR, $32", prefix)
	for i := range 4 {
		a.l("DATA %sBits<>+%d(SB)/8, $0x8040201008040201", prefix, 8*i)
	}
	a.l("GLOBL %sBits<>(SB), RODATA|NOPTR, $32", prefix)
}

// offsetShared loads the activation block for the formats with an offset (q-8 or q-16):
// Y5/Y18 get lanes that sum to -offset·Σx (the lane value is -Σx shifted left by shift).
func offsetShared(vnni bool, shift int) []string {
	x, dx, c, zero := "Y0", "Y1", "Y5", "Y13"
	load := "VMOVDQU"
	if vnni {
		x, dx, c, zero, load = "Y16", "Y17", "Y18", "Y29", "VMOVDQU32"
	}
	s := []string{load + " (R13), " + x, "VBROADCASTSS (R8)(R14*1), " + dx, "VPBROADCASTD (CX)(R14*1), " + c}
	if shift > 0 {
		s = append(s, fmt.Sprintf("VPSLLD $%d, %s, %s", shift, c, c))
	}
	return append(s, fmt.Sprintf("VPSUBD %s, %s, %s // lanes sum to -offset·Σx", c, zero, c))
}

// minShared loads the activation block for the formats with a minimum: Y5/Y18 get
// dx·Σx/8 in each lane.
func minShared(vnni bool) []string {
	if vnni {
		return []string{"VMOVDQU32 (R13), Y16", "VBROADCASTSS (R8)(R14*1), Y17", "VPBROADCASTD (CX)(R14*1), Y18",
			"VCVTDQ2PS Y18, Y18", "VMULPS Y17, Y18, Y18", "VMULPS Y25, Y18, Y18 // dx·Σx/8 in each lane"}
	}
	return []string{"VMOVDQU (R13), Y0", "VBROADCASTSS (R8)(R14*1), Y1", "VPBROADCASTD (CX)(R14*1), Y5",
		"VCVTDQ2PS Y5, Y5", "VMULPS Y1, Y5, Y5", "VMULPS Y13, Y5, Y5 // dx·Σx/8 in each lane"}
}

// format describes one format for the generator.
type format struct {
	name       string // "Q4_0"
	blockBytes int
	qs         int  // offset of the nibbles in the block
	qh         int  // offset of the fifth bits, 0 if none
	min        bool // value q*d + m rather than (q-offset)*d
}

func generate(name string) string {
	f := map[string]format{
		"Q4_0": {"Q4_0", 18, 2, 0, false},
		"Q5_0": {"Q5_0", 22, 6, 2, false},
		"Q4_1": {"Q4_1", 20, 4, 0, true},
		"Q5_1": {"Q5_1", 24, 8, 4, true},
	}[name]
	lower := strings.ToLower(name)
	var a asm
	fmt.Fprintf(&a, header, name, lower)
	if f.qh != 0 {
		fifthBitTables(&a, lower)
	}
	rowMacros(&a, f)
	avx2Pro := append([]string(nil), avx2Prologue...)
	vnniPro := append([]string(nil), vnniPrologue...)
	var avx2Shared, vnniShared []string
	if f.min {
		avx2Pro = append(avx2Pro, "MOVL $0x3e000000, AX // 0.125", "MOVQ AX, X13", "VBROADCASTSS X13, Y13")
		vnniPro = append(vnniPro, "MOVL $0x3e000000, AX // 0.125", "VPBROADCASTD AX, Y25")
		avx2Shared, vnniShared = minShared(false), minShared(true)
	} else {
		avx2Pro = append(avx2Pro, "VPXOR Y13, Y13, Y13")
		shift := 0 // lanes of -Σx sum to -8·Σx; Q5_0's offset of 16 needs -2·Σx
		if f.qh != 0 {
			shift = 1
		}
		avx2Shared, vnniShared = offsetShared(false, shift), offsetShared(true, shift)
	}
	if f.qh != 0 {
		avx2Pro = append(avx2Pro,
			fmt.Sprintf("VMOVDQU %sSpread<>(SB), Y10", lower),
			fmt.Sprintf("VMOVDQU %sBits<>(SB), Y11", lower),
			"MOVL $0x10101010, AX",
			"MOVQ AX, X12",
			"VPBROADCASTD X12, Y12 // fifth bit")
	}
	kernel4(&a, lower+"DotAVX2", avx2Pro, avx2Shared, name+"ROW_AVX2", f.blockBytes)
	a.l("")
	kernel4(&a, lower+"DotVNNI", vnniPro, vnniShared, name+"ROW_VNNI", f.blockBytes)
	a.l("")
	kernel8(&a, lower+"DotVNNI8", vnniPro, vnniShared, name+"ROW_VNNI", f.blockBytes)
	if !f.min {
		dequant(&a, f)
	}
	return a.String()
}

// rowMacros writes the format's row macros: one block of one row times the activation
// block, added to acc.
func rowMacros(a *asm, f format) {
	m := func(format string, args ...any) { a.l(format+" \\", args...) }
	a.l("")
	switch {
	case !f.min && f.qh == 0:
		a.l("// %sROW_AVX2 adds row base's block at AX times the activation block to acc: the 32", f.name)
		a.l("// nibbles as unsigned bytes (low nibbles then high), VPMADDUBSW with x, pairs summed by")
		a.l("// VPMADDWD, plus Y5 (lanes summing to -8·Σx) for the offset of 8.")
	case !f.min:
		a.l("// %sROW_AVX2 adds row base's block at AX times the activation block to acc: the 32", f.name)
		a.l("// nibbles as unsigned bytes with bit j of qh added as 16 to byte j, VPMADDUBSW with x,")
		a.l("// pairs summed by VPMADDWD, plus Y5 (lanes summing to -16·Σx) for the offset of 16.")
	default:
		a.l("// %sROW_AVX2 adds row base's block at AX times the activation block to acc: the 32", f.name)
		if f.qh != 0 {
			a.l("// nibbles as unsigned bytes")
			a.l("// (bit j of qh adding 16 to byte j), VPMADDUBSW with x, pairs summed by VPMADDWD,")
		} else {
			a.l("// nibbles as unsigned bytes, VPMADDUBSW with x, pairs summed by VPMADDWD,")
		}
		a.l("// scaled by d·dx, plus m times Y5 (lanes summing to dx·Σx) for the minimum.")
	}
	a.l("#define %sROW_AVX2(base, acc) \\", f.name)
	m("\tVMOVDQU %d(base)(AX*1), X2", f.qs)
	m("\tVPSRLW $4, X2, X3")
	m("\tVINSERTI128 $1, X3, Y2, Y2")
	m("\tVPAND Y14, Y2, Y2")
	if f.qh != 0 {
		m("\tVPBROADCASTD %d(base)(AX*1), Y3", f.qh)
		m("\tVPSHUFB Y10, Y3, Y3")
		m("\tVPAND Y11, Y3, Y3")
		m("\tVPCMPEQB Y11, Y3, Y3")
		m("\tVPAND Y12, Y3, Y3")
		m("\tVPOR Y3, Y2, Y2")
	}
	m("\tVPMADDUBSW Y0, Y2, Y3")
	m("\tVPMADDWD Y15, Y3, Y3")
	if !f.min {
		m("\tVPADDD Y5, Y3, Y3")
	}
	m("\tVCVTDQ2PS Y3, Y3")
	m("\tVCVTPH2PS (base)(AX*1), X4")
	m("\tVMULSS X1, X4, X4")
	m("\tVBROADCASTSS X4, Y4")
	if f.min {
		m("\tVFMADD231PS Y3, Y4, acc")
		m("\tVPBROADCASTW 2(base)(AX*1), X4")
		m("\tVCVTPH2PS X4, Y4")
		a.l("\tVFMADD231PS Y5, Y4, acc")
	} else {
		a.l("\tVFMADD231PS Y3, Y4, acc")
	}
	a.l("")
	switch {
	case !f.min && f.qh == 0:
		a.l("// %sROW_VNNI does what %sROW_AVX2 does with VPDPBUSD into the correction Y18.", f.name, f.name)
	case !f.min:
		a.l("// %sROW_VNNI does what %sROW_AVX2 does, taking qh as a byte mask for adding 16, and", f.name, f.name)
		a.l("// VPDPBUSD into the correction Y18.")
	default:
		a.l("// %sROW_VNNI does what %sROW_AVX2 does with VPDPBUSD (Y18: dx·Σx/8 per lane).", f.name, f.name)
	}
	a.l("#define %sROW_VNNI(base, acc) \\", f.name)
	m("\tVBROADCASTI32X4 %d(base)(AX*1), Y19", f.qs)
	m("\tVPSRLVW Y24, Y19, Y19")
	m("\tVPANDD Y26, Y19, Y19")
	if f.qh != 0 {
		m("\tKMOVD %d(base)(AX*1), K1", f.qh)
		m("\tVPADDB Y27, Y19, K1, Y19")
	}
	if f.min {
		m("\tVPXORD Y21, Y21, Y21")
	} else {
		m("\tVMOVDQA32 Y18, Y21")
	}
	m("\tVPDPBUSD Y16, Y19, Y21")
	m("\tVCVTDQ2PS Y21, Y21")
	m("\tVCVTPH2PS (base)(AX*1), X20")
	m("\tVMULSS X17, X20, X20")
	m("\tVBROADCASTSS X20, Y20")
	if f.min {
		m("\tVFMADD231PS Y21, Y20, acc")
		m("\tVPBROADCASTW 2(base)(AX*1), X20")
		m("\tVCVTPH2PS X20, Y20")
		a.l("\tVFMADD231PS Y18, Y20, acc")
	} else {
		a.l("\tVFMADD231PS Y21, Y20, acc")
	}
	a.l("")
}

// dequant writes the AVX2 decoder of the formats with an offset.
func dequant(a *asm, f format) {
	lower := strings.ToLower(f.name)
	a.l("")
	a.l("// func %sDequantAVX2(dst *float32, src *byte, nb int)", lower)
	a.l("TEXT ·%sDequantAVX2(SB), NOSPLIT, $0-24", lower)
	a.i("MOVQ dst+0(FP), DI")
	a.i("MOVQ src+8(FP), SI")
	a.i("MOVQ nb+16(FP), CX")
	a.i("TESTQ CX, CX")
	a.i("JLE %sd_done", lower)
	if f.qh == 0 {
		a.i("MOVL $0x0f0f0f0f, AX")
		a.i("MOVQ AX, X15")
		a.i("VPBROADCASTD X15, X15")
		a.i("MOVL $0x08080808, AX")
		a.i("MOVQ AX, X14")
		a.i("VPBROADCASTD X14, X14")
		a.l("")
		a.l("%sd_loop:", lower)
		a.i("VPBROADCASTW (SI), X0")
		a.i("VCVTPH2PS X0, Y0")
		a.i("VMOVDQU 2(SI), X1")
		a.i("VPSRLW $4, X1, X2")
		a.i("VPAND X15, X1, X1")
		a.i("VPAND X15, X2, X2")
		a.i("VPSUBB X14, X1, X1 // values 0..15 as signed bytes")
		a.i("VPSUBB X14, X2, X2 // values 16..31")
		a.i("VPSRLDQ $8, X1, X3")
		a.i("VPSRLDQ $8, X2, X4")
	} else {
		a.i("MOVL $0x0f0f0f0f, AX")
		a.i("MOVQ AX, X15")
		a.i("VPBROADCASTD X15, Y15")
		a.i("MOVL $0x10101010, AX")
		a.i("MOVQ AX, X14")
		a.i("VPBROADCASTD X14, Y14")
		a.i("VMOVDQU %sSpread<>(SB), Y13", lower)
		a.i("VMOVDQU %sBits<>(SB), Y12", lower)
		a.l("")
		a.l("%sd_loop:", lower)
		a.i("VPBROADCASTW (SI), X0")
		a.i("VCVTPH2PS X0, Y0")
		a.i("VMOVDQU %d(SI), X1", f.qs)
		a.i("VPSRLW $4, X1, X2")
		a.i("VINSERTI128 $1, X2, Y1, Y1")
		a.i("VPAND Y15, Y1, Y1")
		a.i("VPBROADCASTD %d(SI), Y2", f.qh)
		a.i("VPSHUFB Y13, Y2, Y2")
		a.i("VPAND Y12, Y2, Y2")
		a.i("VPCMPEQB Y12, Y2, Y2")
		a.i("VPAND Y14, Y2, Y2")
		a.i("VPOR Y2, Y1, Y1")
		a.i("VPSUBB Y14, Y1, Y1 // q-16 as signed bytes")
		a.i("VEXTRACTI128 $1, Y1, X2")
		a.i("VPSRLDQ $8, X1, X3")
		a.i("VPSRLDQ $8, X2, X4")
	}
	a.i("VPMOVSXBD X1, Y1")
	a.i("VPMOVSXBD X3, Y3")
	a.i("VPMOVSXBD X2, Y2")
	a.i("VPMOVSXBD X4, Y4")
	for _, r := range []string{"Y1", "Y3", "Y2", "Y4"} {
		a.i("VCVTDQ2PS %s, %s", r, r)
	}
	for _, r := range []string{"Y1", "Y3", "Y2", "Y4"} {
		a.i("VMULPS Y0, %s, %s", r, r)
	}
	a.i("VMOVUPS Y1, (DI)")
	a.i("VMOVUPS Y3, 32(DI)")
	a.i("VMOVUPS Y2, 64(DI)")
	a.i("VMOVUPS Y4, 96(DI)")
	a.i("ADDQ $%d, SI", f.blockBytes)
	a.i("ADDQ $128, DI")
	a.i("DECQ CX")
	a.i("JNZ %sd_loop", lower)
	a.l("")
	a.l("%sd_done:", lower)
	a.i("VZEROUPPER")
	a.i("RET")
}
