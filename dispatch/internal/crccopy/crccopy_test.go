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
	lengths := []int{0, 1, 15, 16, 63, 64, 255, 256, 257, 1023, 1024, 1025, 1279, 1280, 1281, 4096, 4097, 65535, 65536, 65536 + 16}
	for n := 1000; n < 3000; n += 7 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for _, off := range []int{0, 1, 13} {
			for _, start := range []uint32{0, 0xffffffff, rng.Uint32()} {
				in := src[off : off+n]
				dst := make([]byte, n+off+8)
				got := UpdateIEEE(start, dst[off:], in)
				require.Equalf(t, crc32.Update(start, crc32.IEEETable, in), got, "crc of %d bytes at offset %d from %#x", n, off, start)
				require.Truef(t, bytes.Equal(in, dst[off:off+n]), "copy of %d bytes at offset %d", n, off)
				require.Equalf(t, make([]byte, off), dst[:off], "bytes before dst written (n=%d)", n)
				require.Equalf(t, make([]byte, 8), dst[off+n:], "bytes after len(src) written (n=%d)", n)
			}
		}
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
	dst := make([]byte, len(src))
	var crc uint32
	for rest, done := src, 0; len(rest) > 0; {
		k := min(len(rest), 1+rng.IntN(5000))
		crc = UpdateIEEE(crc, dst[done:], rest[:k])
		rest, done = rest[k:], done+k
	}
	assert.Equal(t, crc32.ChecksumIEEE(src), crc)
	assert.Equal(t, src, dst)
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

func FuzzUpdateIEEE(f *testing.F) {
	f.Add(uint32(0), []byte("hello"), 0)
	f.Add(uint32(7), bytes.Repeat([]byte{0xa5}, 3000), 3)
	f.Fuzz(func(t *testing.T, crc uint32, src []byte, off int) {
		off = off & 63
		dst := make([]byte, len(src)+off)
		got := UpdateIEEE(crc, dst[off:], src)
		if want := crc32.Update(crc, crc32.IEEETable, src); got != want {
			t.Fatalf("crc %#x, want %#x", got, want)
		}
		if !bytes.Equal(dst[off:], src) {
			t.Fatal("copy differs")
		}
	})
}

// BenchmarkChecksumIEEE is the kernel against its references on the
// same buffers: hash/crc32 alone, and hash/crc32 followed by copy.
func BenchmarkChecksumIEEE(b *testing.B) {
	for _, n := range []int{256, 512, 1024, 4096, 65536} {
		src := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, n/8)
		dst := make([]byte, n)
		b.Run(fmt.Sprintf("CopyFused/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				ChecksumIEEE(dst, src)
			}
		})
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

// kernelHere reports whether this CPU has what the kernel needs, asked
// of the CPU itself, not of foldable, so a broken foldable cannot turn
// the tests below into skips.
func kernelHere() bool {
	return runtime.GOARCH == "amd64" && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ
}

// TestKernelRunsHere makes sure the tests above exercised the AVX-512
// kernel and not only the fallback, where the CPU has the instructions,
// and that Fuses says so exactly from minFold bytes on.
func TestKernelRunsHere(t *testing.T) {
	if !kernelHere() {
		assert.False(t, Fuses(1<<20), "no kernel: nothing fuses")
		t.Skip("no AVX-512 VPCLMULQDQ on this CPU (or not amd64): only the copy + hash/crc32 path was tested")
	}
	assert.Equal(t, 0, foldable(minFold-1), "below the threshold")
	assert.Equal(t, minFold, foldable(minFold))
	assert.Equal(t, 4096, foldable(4096+255))
	for _, c := range []struct {
		n    int
		want bool
	}{{0, false}, {1, false}, {minFold - 1, false}, {minFold, true}, {minFold + 1, true}, {65536, true}} {
		assert.Equalf(t, c.want, Fuses(c.n), "Fuses(%d)", c.n)
	}
}
