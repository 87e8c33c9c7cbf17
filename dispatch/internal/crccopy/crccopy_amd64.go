package crccopy

import "golang.org/x/sys/cpu"

// foldable returns how many leading bytes of an n-byte input the kernel
// takes: a whole number of steps, none when AVX-512 VPCLMULQDQ is absent.
// Below minFold the kernel's set-up and final reduction cost more than
// hash/crc32 plus copy.
func foldable(n int) int {
	if n < minFold || !cpu.X86.HasAVX512F || !cpu.X86.HasAVX512VPCLMULQDQ {
		return 0
	}
	return n &^ (foldBlock - 1)
}

// foldCopy runs the kernel over src, n a nonzero multiple of foldBlock,
// storing each block into dst; reg is the CRC register (the inverted
// CRC) before src. It returns the register after src.
func foldCopy(dst, src []byte, reg uint32) uint32 {
	return foldCopyAVX512(&dst[0], &src[0], len(src), reg, k2048lo, k2048hi, k512lo, k512hi, k128lo, k128hi, k64, poly, mu)
}

//go:noescape
func foldCopyAVX512(dst, src *byte, n int, reg uint32, k2048lo, k2048hi, k512lo, k512hi, k128lo, k128hi, k64, poly, mu uint64) uint32
