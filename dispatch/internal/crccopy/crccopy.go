// Package crccopy copies a payload and computes its CRC-32/IEEE in one
// pass over the bytes.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it serves the step between the Assembler and the Sinks: a
// verdict frame's payload must be checked (CRC) and kept (copied into
// the verdict bucket). Done apart, the copy reads every byte a second
// time; done here, each block is loaded once, stored to the copy and
// folded into the CRC while the next block loads, so keeping a verdict
// costs little more than checking it.
//
// Two amd64 kernels follow Intel's "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ": one folds four 512-bit registers with
// AVX-512 VPCLMULQDQ (256 bytes a step), the other four 128-bit
// registers with PCLMULQDQ and SSE4.1 (64 bytes a step) for CPUs
// without AVX-512. Elsewhere, and for short inputs, UpdateIEEE is copy
// plus hash/crc32, with the same results.
package crccopy

import "hash/crc32"

// UpdateIEEE copies src into dst and returns crc updated with src, the
// value crc32.Update(crc, crc32.IEEETable, src) returns. dst must hold
// at least len(src) bytes and must not overlap src.
func UpdateIEEE(crc uint32, dst, src []byte) uint32 {
	return update(kernelHere(), crc, dst, src)
}

// update is UpdateIEEE with kernel k, so the tests can run each kernel
// the CPU has.
func update(k kernel, crc uint32, dst, src []byte) uint32 {
	dst = dst[:len(src)]
	if n := k.foldable(len(src)); n > 0 {
		crc = ^k.foldCopy(dst[:n], src[:n], ^crc)
		dst, src = dst[n:], src[n:]
	}
	copy(dst, src)
	return crc32.Update(crc, crc32.IEEETable, src)
}

// Fuses reports whether UpdateIEEE copies and checksums n bytes in one
// pass on this machine: a kernel present and n at least its minimum
// (256 bytes for the AVX-512 kernel, 1 KiB for the SSE one).
// Otherwise it is copy plus hash/crc32, no faster than doing the two
// apart, so a caller may as well not ask.
func Fuses(n int) bool { return kernelHere().foldable(n) > 0 }

// ChecksumIEEE copies src into dst and returns the CRC-32/IEEE of src.
func ChecksumIEEE(dst, src []byte) uint32 { return UpdateIEEE(0, dst, src) }

// kernel names a folding kernel.
type kernel uint8

const (
	noKernel     kernel = iota // copy + hash/crc32
	sseKernel                  // PCLMULQDQ + SSE4.1, four 128-bit lanes
	avx512Kernel               // AVX-512 VPCLMULQDQ, four 512-bit lanes
)

// String names k for test names.
func (k kernel) String() string {
	return [...]string{"none", "sse", "avx512"}[k]
}

// cpuFeatures are the CPU features the kernels need.
type cpuFeatures struct {
	avx512f, avx512vpclmul, pclmul, sse41 bool
}

// runsOn reports whether a CPU with features f runs k: the SSE kernel
// needs PCLMULQDQ and SSE4.1 (PINSRQ, PEXTRD), the AVX-512 one AVX-512F
// and VPCLMULQDQ.
func (k kernel) runsOn(f cpuFeatures) bool {
	switch k {
	case sseKernel:
		return f.pclmul && f.sse41
	case avx512Kernel:
		return f.avx512f && f.avx512vpclmul
	}
	return true
}

// kernelsFor lists the kernels a CPU with features f runs, the fastest
// last.
func kernelsFor(f cpuFeatures) []kernel {
	var ks []kernel
	for k := noKernel; k <= avx512Kernel; k++ {
		if k.runsOn(f) {
			ks = append(ks, k)
		}
	}
	return ks
}

// bestFor is the fastest kernel a CPU with features f runs, the last of
// kernelsFor(f), found without building the list (it runs per frame).
func bestFor(f cpuFeatures) kernel {
	k := avx512Kernel
	for !k.runsOn(f) {
		k--
	}
	return k
}

// step is the bytes a kernel folds per loop iteration; its input is a
// whole number of steps.
func (k kernel) step() int {
	if k == avx512Kernel {
		return 256
	}
	return 64
}

// minFold is the shortest input k takes: below it, its set-up and final
// reduction cost more than copy + hash/crc32 (BenchmarkChecksumIEEE).
func (k kernel) minFold() int {
	if k == avx512Kernel {
		return 256
	}
	return 1024
}

// foldable returns how many leading bytes of an n-byte input k takes: a
// whole number of steps, none below its minimum or for noKernel.
func (k kernel) foldable(n int) int {
	if k == noKernel || n < k.minFold() {
		return 0
	}
	return n &^ (k.step() - 1)
}

// Fold constants for CRC-32/IEEE in the bit-reflected domain: folding a
// 128-bit lane forward by D bits multiplies its low half by
// x^(D+32) mod P and its high half by x^(D-32) mod P, each reflected and
// shifted left by one (crccopy_test.go derives every one from P).
const (
	k2048lo = 0x11542778a // x^2080 mod P: 2048 bits on, the AVX-512 kernel's step
	k2048hi = 0x1322d1430 // x^2016 mod P
	k512lo  = 0x154442bd4 // x^544 mod P: 512 bits on, the SSE kernel's step and AVX-512 register to register
	k512hi  = 0x1c6e41596 // x^480 mod P
	k128lo  = 0x1751997d0 // x^160 mod P: 128 bits on, one 128-bit lane into the next
	k128hi  = 0x0ccaa009e // x^96 mod P; also folds 128 bits to 64
	k64     = 0x163cd6124 // x^64 mod P: folds 64 bits to 32

	// Barrett reduction of the last 64 bits to the 32-bit register.
	poly = 0x1db710641 // P itself, reflected (33 bits)
	mu   = 0x1f7011641 // x^64 div P, reflected (33 bits)
)
