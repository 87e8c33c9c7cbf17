#include "textflag.h"

// func foldCopyAVX512(dst, src *byte, n int, reg uint32, k2048lo, k2048hi, k512lo, k512hi, k128lo, k128hi, k64, poly, mu uint64) uint32
//
// n is a nonzero multiple of 256. Z0–Z3 are four 512-bit accumulators,
// each holding four 128-bit lanes; every step loads the next 256 bytes,
// stores them to dst and folds each accumulator forward by 2048 bits
// into them. Four independent chains keep the carry-less multiplier
// busy; the stores ride along in the load/store ports. The remainder is
// then folded to 128 bits and reduced to the 32-bit CRC register
// (Barrett reduction). Each constant pair {lo, hi} is built in the
// registers from two 8-byte loads, which the caller's 8-byte stores
// forward to without a stall.
TEXT ·foldCopyAVX512(SB), NOSPLIT, $0-108
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

	VMOVDQU64 0(SI), Z0
	VMOVDQU64 64(SI), Z1
	VMOVDQU64 128(SI), Z2
	VMOVDQU64 192(SI), Z3
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)

	// The CRC register enters as an xor into the first four bytes.
	VPXORQ Z4, Z4, Z4
	MOVL   reg+24(FP), AX
	VMOVD  AX, X4
	VPXORQ Z4, Z0, Z0

	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $256, CX
	JZ   reduce

	VPBROADCASTQ k2048lo+32(FP), Z8
	VPBROADCASTQ k2048hi+40(FP), Z9
	VPUNPCKLQDQ  Z9, Z8, Z8

	PCALIGN $32
loop:
	VMOVDQU64 0(SI), Z4
	VMOVDQU64 64(SI), Z5
	VMOVDQU64 128(SI), Z6
	VMOVDQU64 192(SI), Z7
	VMOVDQU64 Z4, 0(DI)
	VMOVDQU64 Z5, 64(DI)
	VMOVDQU64 Z6, 128(DI)
	VMOVDQU64 Z7, 192(DI)

	VPCLMULQDQ $0x00, Z8, Z0, Z10
	VPCLMULQDQ $0x11, Z8, Z0, Z0
	VPCLMULQDQ $0x00, Z8, Z1, Z11
	VPCLMULQDQ $0x11, Z8, Z1, Z1
	VPCLMULQDQ $0x00, Z8, Z2, Z12
	VPCLMULQDQ $0x11, Z8, Z2, Z2
	VPCLMULQDQ $0x00, Z8, Z3, Z13
	VPCLMULQDQ $0x11, Z8, Z3, Z3
	VPTERNLOGD $0x96, Z10, Z4, Z0
	VPTERNLOGD $0x96, Z11, Z5, Z1
	VPTERNLOGD $0x96, Z12, Z6, Z2
	VPTERNLOGD $0x96, Z13, Z7, Z3

	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $256, CX
	JNZ  loop

reduce:
	// Fold Z0 into Z1, Z1 into Z2, Z2 into Z3: 512 bits each.
	VPBROADCASTQ k512lo+48(FP), Z8
	VPBROADCASTQ k512hi+56(FP), Z9
	VPUNPCKLQDQ  Z9, Z8, Z8
	VPCLMULQDQ $0x00, Z8, Z0, Z10
	VPCLMULQDQ $0x11, Z8, Z0, Z0
	VPTERNLOGD $0x96, Z10, Z0, Z1
	VPCLMULQDQ $0x00, Z8, Z1, Z10
	VPCLMULQDQ $0x11, Z8, Z1, Z1
	VPTERNLOGD $0x96, Z10, Z1, Z2
	VPCLMULQDQ $0x00, Z8, Z2, Z10
	VPCLMULQDQ $0x11, Z8, Z2, Z2
	VPTERNLOGD $0x96, Z10, Z2, Z3

	// Fold Z3's four 128-bit lanes into its last one.
	VEXTRACTI32X4 $1, Z3, X4
	VEXTRACTI32X4 $2, Z3, X5
	VEXTRACTI32X4 $3, Z3, X6
	VMOVQ   k128lo+64(FP), X8
	VPINSRQ $1, k128hi+72(FP), X8, X8
	VPCLMULQDQ $0x00, X8, X3, X10
	VPCLMULQDQ $0x11, X8, X3, X3
	VPXOR      X10, X3, X3
	VPXOR      X3, X4, X4
	VPCLMULQDQ $0x00, X8, X4, X10
	VPCLMULQDQ $0x11, X8, X4, X4
	VPXOR      X10, X4, X4
	VPXOR      X4, X5, X5
	VPCLMULQDQ $0x00, X8, X5, X10
	VPCLMULQDQ $0x11, X8, X5, X5
	VPXOR      X10, X5, X5
	VPXOR      X5, X6, X6

	// 128 → 64 bits: the low half times x^96 into the high half.
	VPCLMULQDQ $0x10, X8, X6, X7
	VPSRLDQ    $8, X6, X6
	VPXOR      X7, X6, X6

	// 64 → 32 bits: the low 32 times x^64 into the rest.
	VPCMPEQB   X3, X3, X3
	VPSRLQ     $32, X3, X3 // low 32 bits of each quadword
	VPSRLDQ    $4, X6, X2
	VPAND      X3, X6, X6
	VMOVQ      k64+80(FP), X9
	VPCLMULQDQ $0x00, X9, X6, X6
	VPXOR      X2, X6, X6

	// Barrett reduction: q = (low 32 · mu) mod x^32, then r ^= q · P;
	// the register is the second doubleword.
	VMOVQ      poly+88(FP), X9
	VPINSRQ    $1, mu+96(FP), X9, X9
	VPAND      X3, X6, X7
	VPCLMULQDQ $0x10, X9, X7, X7
	VPAND      X3, X7, X7
	VPCLMULQDQ $0x00, X9, X7, X7
	VPXOR      X6, X7, X7
	VPEXTRD    $1, X7, AX
	MOVL       AX, ret+104(FP)
	VZEROUPPER
	RET

// func foldCopySSE(dst, src *byte, n int, reg uint32, k512lo, k512hi, k128lo, k128hi, k64, poly, mu uint64) uint32
//
// The same algorithm for CPUs without AVX-512, in legacy SSE encoding
// (PCLMULQDQ, SSE4.1 for PINSRQ/PEXTRD): n is a nonzero multiple of 64;
// X0–X3 are four 128-bit accumulators, each folded forward by 512 bits
// per step into the next 64 bytes, which are stored to dst as loaded.
TEXT ·foldCopySSE(SB), NOSPLIT, $0-92
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)

	// The CRC register enters as an xor into the first four bytes.
	MOVL reg+24(FP), AX
	MOVL AX, X4
	PXOR X4, X0

	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $64, CX
	JZ   reduceSSE

	MOVQ   k512lo+32(FP), X8
	PINSRQ $1, k512hi+40(FP), X8

	PCALIGN $32
loopSSE:
	MOVOU 0(SI), X4
	MOVOU 16(SI), X5
	MOVOU 32(SI), X6
	MOVOU 48(SI), X7
	MOVOU X4, 0(DI)
	MOVOU X5, 16(DI)
	MOVOU X6, 32(DI)
	MOVOU X7, 48(DI)

	MOVOA     X0, X10
	MOVOA     X1, X11
	MOVOA     X2, X12
	MOVOA     X3, X13
	PCLMULQDQ $0x00, X8, X0
	PCLMULQDQ $0x00, X8, X1
	PCLMULQDQ $0x00, X8, X2
	PCLMULQDQ $0x00, X8, X3
	PCLMULQDQ $0x11, X8, X10
	PCLMULQDQ $0x11, X8, X11
	PCLMULQDQ $0x11, X8, X12
	PCLMULQDQ $0x11, X8, X13
	PXOR      X10, X0
	PXOR      X11, X1
	PXOR      X12, X2
	PXOR      X13, X3
	PXOR      X4, X0
	PXOR      X5, X1
	PXOR      X6, X2
	PXOR      X7, X3

	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $64, CX
	JNZ  loopSSE

reduceSSE:
	// Fold X0 into X1, X1 into X2, X2 into X3: 128 bits each.
	MOVQ      k128lo+48(FP), X8
	PINSRQ    $1, k128hi+56(FP), X8
	MOVOA     X0, X10
	PCLMULQDQ $0x00, X8, X0
	PCLMULQDQ $0x11, X8, X10
	PXOR      X10, X0
	PXOR      X0, X1
	MOVOA     X1, X10
	PCLMULQDQ $0x00, X8, X1
	PCLMULQDQ $0x11, X8, X10
	PXOR      X10, X1
	PXOR      X1, X2
	MOVOA     X2, X10
	PCLMULQDQ $0x00, X8, X2
	PCLMULQDQ $0x11, X8, X10
	PXOR      X10, X2
	PXOR      X2, X3

	// 128 → 64 bits: the low half times x^96 into the high half.
	MOVOA     X3, X7
	PCLMULQDQ $0x10, X8, X7
	PSRLDQ    $8, X3
	PXOR      X7, X3

	// 64 → 32 bits: the low 32 times x^64 into the rest.
	PCMPEQB   X9, X9
	PSRLQ     $32, X9 // low 32 bits of each quadword
	MOVOA     X3, X2
	PSRLDQ    $4, X2
	PAND      X9, X3
	MOVQ      k64+64(FP), X5
	PCLMULQDQ $0x00, X5, X3
	PXOR      X2, X3

	// Barrett reduction, as in foldCopyAVX512.
	MOVQ      poly+72(FP), X5
	PINSRQ    $1, mu+80(FP), X5
	MOVOA     X3, X7
	PAND      X9, X7
	PCLMULQDQ $0x10, X5, X7
	PAND      X9, X7
	PCLMULQDQ $0x00, X5, X7
	PXOR      X3, X7
	PEXTRD    $1, X7, AX
	MOVL      AX, ret+88(FP)
	RET
