package crccopy

import "golang.org/x/sys/cpu"

// kernelHere reports the fastest kernel this CPU runs. It is called per
// frame, so it reads the features and allocates nothing.
func kernelHere() kernel { return bestFor(features()) }

// kernels lists every kernel this CPU can run, the fastest last.
func kernels() []kernel { return kernelsFor(features()) }

func features() cpuFeatures {
	return cpuFeatures{
		avx512f:       cpu.X86.HasAVX512F,
		avx512vpclmul: cpu.X86.HasAVX512VPCLMULQDQ,
		pclmul:        cpu.X86.HasPCLMULQDQ,
		sse41:         cpu.X86.HasSSE41,
	}
}

// foldCopy runs kernel k over src, a nonzero whole number of k's steps,
// storing each block into dst; reg is the CRC register (the inverted
// CRC) before src. It returns the register after src.
func (k kernel) foldCopy(dst, src []byte, reg uint32) uint32 {
	if k == avx512Kernel {
		return foldCopyAVX512(&dst[0], &src[0], len(src), reg, k2048lo, k2048hi, k512lo, k512hi, k128lo, k128hi, k64, poly, mu)
	}
	return foldCopySSE(&dst[0], &src[0], len(src), reg, k512lo, k512hi, k128lo, k128hi, k64, poly, mu)
}

//go:noescape
func foldCopyAVX512(dst, src *byte, n int, reg uint32, k2048lo, k2048hi, k512lo, k512hi, k128lo, k128hi, k64, poly, mu uint64) uint32

//go:noescape
func foldCopySSE(dst, src *byte, n int, reg uint32, k512lo, k512hi, k128lo, k128hi, k64, poly, mu uint64) uint32
