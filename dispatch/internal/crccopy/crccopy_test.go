package crccopy

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/cpu"
)

// xpow returns x^n mod P for the IEEE polynomial in its normal
// (most-significant-bit-first) form, by repeated multiplication by x.
func xpow(n int) uint32 {
	r := uint32(1)
	for range n {
		carry := r&0x80000000 != 0
		r <<= 1
		if carry {
			r ^= 0x04C11DB7
		}
	}
	return r
}

// TestFoldConstants derives every fold constant from the polynomial, so
// none of them is a number taken on trust.
func TestFoldConstants(t *testing.T) {
	reflected := func(n int) uint64 { return uint64(bits.Reverse32(xpow(n))) << 1 }
	for _, c := range []struct {
		name string
		got  uint64
		d    int
	}{
		{"k2048lo", k2048lo, 2048 + 32}, {"k2048hi", k2048hi, 2048 - 32},
		{"k512lo", k512lo, 512 + 32}, {"k512hi", k512hi, 512 - 32},
		{"k128lo", k128lo, 128 + 32}, {"k128hi", k128hi, 128 - 32},
		{"k64", k64, 64},
	} {
		assert.Equalf(t, reflected(c.d), c.got, "%s should be x^%d mod P, reflected and shifted", c.name, c.d)
	}

	// P with its x^32 term, 33 bits, reflected.
	const p = 0x104C11DB7
	assert.Equal(t, bits.Reverse64(p)>>31, uint64(poly), "poly")
	// mu = x^64 div P by long division over GF(2), one dividend bit at a
	// time from x^64 down; the quotient has degree 32.
	var rem, quo uint64
	for i := 64; i >= 0; i-- {
		rem <<= 1
		if i == 64 {
			rem |= 1
		}
		quo <<= 1
		if rem&(1<<32) != 0 {
			rem ^= p
			quo |= 1
		}
	}
	assert.Equal(t, bits.Reverse64(quo)>>31, uint64(mu), "mu")
}

// TestUpdateIEEEMatchesHashCRC32 compares the copy and the CRC with
// copy and hash/crc32 over every length around the kernel's step and
// threshold, at unaligned offsets, from nonzero starting CRCs.
func TestUpdateIEEEMatchesHashCRC32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 70000)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	lengths := []int{0, 1, 15, 16, 63, 64, 65, 127, 128, 255, 256, 257, 319, 320, 511, 512, 513, 1023, 1024, 1025, 1279, 1280, 1281, 4096, 4097, 65535, 65536, 65536 + 16}
	for n := 200; n < 3000; n += 7 {
		lengths = append(lengths, n)
	}
	for _, k := range kernels() {
		t.Run(k.String(), func(t *testing.T) {
			for _, n := range lengths {
				for _, off := range []int{0, 1, 13} {
					for _, start := range []uint32{0, 0xffffffff, rng.Uint32()} {
						in := src[off : off+n]
						dst := make([]byte, n+off+8)
						got := update(k, start, dst[off:], in)
						require.Equalf(t, crc32.Update(start, crc32.IEEETable, in), got, "crc of %d bytes at offset %d from %#x", n, off, start)
						require.Truef(t, bytes.Equal(in, dst[off:off+n]), "copy of %d bytes at offset %d", n, off)
						require.Equalf(t, make([]byte, off), dst[:off], "bytes before dst written (n=%d)", n)
						require.Equalf(t, make([]byte, 8), dst[off+n:], "bytes after len(src) written (n=%d)", n)
					}
				}
			}
		})
	}
}

// TestUpdateIEEEChained checks that a CRC updated piece by piece equals
// the CRC of the whole, as with crc32.Update.
func TestUpdateIEEEChained(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]byte, 20000)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	for _, k := range kernels() {
		dst := make([]byte, len(src))
		var crc uint32
		for rest, done := src, 0; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(5000))
			crc = update(k, crc, dst[done:], rest[:n])
			rest, done = rest[n:], done+n
		}
		assert.Equal(t, crc32.ChecksumIEEE(src), crc, "kernel %s", k)
		assert.Equal(t, src, dst, "kernel %s", k)
	}
}

// TestUpdateIEEEDetectsCorruption is the negative control: one flipped
// bit anywhere changes the CRC, in the folded part and in the tail.
func TestUpdateIEEEDetectsCorruption(t *testing.T) {
	src := bytes.Repeat([]byte("ktstr verdict payload "), 300)[:4100]
	want := crc32.ChecksumIEEE(src)
	dst := make([]byte, len(src))
	require.Equal(t, want, ChecksumIEEE(dst, src), "positive control")
	for _, i := range []int{0, 3, 4, 255, 256, 1023, 2048, 4095, 4096, 4099} {
		bad := bytes.Clone(src)
		bad[i] ^= 0x10
		assert.NotEqualf(t, want, ChecksumIEEE(dst, bad), "flip at %d", i)
	}
}

func TestUpdateIEEEShortDstPanics(t *testing.T) {
	assert.Panics(t, func() { UpdateIEEE(0, make([]byte, 10), make([]byte, 11)) })
}

// FuzzUpdateIEEE checks every kernel this CPU has against copy and
// hash/crc32, from any starting CRC, at any of 64 alignments.
func FuzzUpdateIEEE(f *testing.F) {
	f.Add(uint32(0), []byte("hello"), 0)
	f.Add(uint32(7), bytes.Repeat([]byte{0xa5}, 3000), 3)
	f.Fuzz(func(t *testing.T, crc uint32, src []byte, off int) {
		off = off & 63
		want := crc32.Update(crc, crc32.IEEETable, src)
		for _, k := range kernels() {
			dst := make([]byte, len(src)+off)
			if got := update(k, crc, dst[off:], src); got != want {
				t.Fatalf("kernel %s: crc %#x, want %#x", k, got, want)
			}
			if !bytes.Equal(dst[off:], src) {
				t.Fatalf("kernel %s: copy differs", k)
			}
		}
	})
}

// BenchmarkChecksumIEEE is each kernel this CPU has against the
// references on the same buffers: hash/crc32 alone, and hash/crc32
// followed by copy. (hash/crc32 itself picks its AVX-512 or SSE path by
// the CPU; GODEBUG=cpu.avx512f=off,cpu.vpclmulqdq=off measures a CPU
// without AVX-512 for both.)
func BenchmarkChecksumIEEE(b *testing.B) {
	for _, n := range []int{64, 128, 256, 512, 1024, 4096, 65536} {
		src := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, n/8)
		dst := make([]byte, n)
		b.Run(fmt.Sprintf("UpdateIEEE/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				UpdateIEEE(0, dst, src)
			}
		})
		for _, k := range kernels()[1:] {
			b.Run(fmt.Sprintf("Fused-%s/%d", k, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					// The kernel alone, threshold aside, to choose it.
					if f := n &^ (k.step() - 1); f > 0 {
						k.foldCopy(dst[:f], src[:f], 0)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("CRC32/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				crc32.ChecksumIEEE(src)
			}
		})
		b.Run(fmt.Sprintf("CRC32ThenCopy/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				crc32.ChecksumIEEE(src)
				copy(dst, src)
			}
		})
	}
}

// TestKernelRunsHere makes sure the tests above exercised every kernel
// this CPU has, asking the CPU itself (x/sys/cpu) rather than kernels or
// kernelHere, so a broken choice cannot turn the tests into skips; and
// that Fuses says yes exactly from the best kernel's minimum on.
func TestKernelRunsHere(t *testing.T) {
	want := []kernel{noKernel}
	if runtime.GOARCH == "amd64" && cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE41 {
		want = append(want, sseKernel)
	}
	if runtime.GOARCH == "amd64" && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ {
		want = append(want, avx512Kernel)
	}
	require.Equal(t, want, kernels())
	best := want[len(want)-1]
	assert.Equal(t, best, kernelHere())
	if best == noKernel {
		assert.False(t, Fuses(1<<20), "no kernel: nothing fuses")
		t.Skip("no PCLMULQDQ kernel on this CPU (or not amd64): only the copy + hash/crc32 path was tested")
	}
	if best != avx512Kernel {
		t.Log("no AVX-512 VPCLMULQDQ on this CPU: the AVX-512 kernel was not tested")
	}
	for _, c := range []struct {
		n    int
		want bool
	}{{0, false}, {1, false}, {best.minFold() - 1, false}, {best.minFold(), true}, {best.minFold() + 1, true}, {65536, true}} {
		assert.Equalf(t, c.want, Fuses(c.n), "Fuses(%d)", c.n)
	}
}

// TestKernelsFor: each kernel needs both of its features.
func TestKernelsFor(t *testing.T) {
	none, sse, avx := noKernel, sseKernel, avx512Kernel
	for _, c := range []struct {
		f    cpuFeatures
		want []kernel
	}{
		{cpuFeatures{}, []kernel{none}},
		{cpuFeatures{pclmul: true}, []kernel{none}},
		{cpuFeatures{sse41: true}, []kernel{none}},
		{cpuFeatures{pclmul: true, sse41: true}, []kernel{none, sse}},
		{cpuFeatures{avx512f: true}, []kernel{none}},
		{cpuFeatures{avx512vpclmul: true}, []kernel{none}},
		{cpuFeatures{avx512f: true, avx512vpclmul: true}, []kernel{none, avx}},
		{cpuFeatures{true, true, true, true}, []kernel{none, sse, avx}},
	} {
		assert.Equalf(t, c.want, kernelsFor(c.f), "%+v", c.f)
		assert.Equalf(t, c.want[len(c.want)-1], bestFor(c.f), "best for %+v", c.f)
	}
}

// TestNoAllocations: the Assembler calls Fuses and UpdateIEEE per frame.
func TestNoAllocations(t *testing.T) {
	src, dst := make([]byte, 4096), make([]byte, 4096)
	assert.Zero(t, testing.AllocsPerRun(100, func() { Fuses(4096) }), "Fuses")
	assert.Zero(t, testing.AllocsPerRun(100, func() { UpdateIEEE(0, dst, src) }), "UpdateIEEE")
}

// TestKernelShapes pins each kernel's step and threshold, which the
// assembly relies on (a whole number of steps, at least one).
func TestKernelShapes(t *testing.T) {
	assert.Equal(t, 0, noKernel.foldable(1<<20))
	assert.Equal(t, 0, sseKernel.foldable(1023))
	assert.Equal(t, 1024, sseKernel.foldable(1024))
	assert.Equal(t, 1088, sseKernel.foldable(1151))
	assert.Equal(t, 0, avx512Kernel.foldable(255))
	assert.Equal(t, 256, avx512Kernel.foldable(256))
	assert.Equal(t, 256, avx512Kernel.foldable(511))
	assert.Equal(t, 4096, avx512Kernel.foldable(4096+255))
	assert.Equal(t, "avx512", avx512Kernel.String())
}
