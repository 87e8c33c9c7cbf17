// Package kerneltest makes stand-in kernel images for tests: bzImages
// whose compressed kernel carries a .config the way CONFIG_IKCONFIG=y
// builds it, in each compression Go can write. It sits outside the data
// flow (bytes → tap → Assembler → Dispatch → Sinks → Outcome): it feeds
// the tests of what provides the guest kernel (kernel, ktstr kernel
// check, ktstr record's pre-flight).
package kerneltest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math/rand/v2"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Release is the release of the images BzImage makes.
const Release = "6.99.0-ikconfig"

// Config is a .config with everything `ktstr record` needs, sched_ext
// included.
const Config = "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\nCONFIG_SCHED_CLASS_EXT=y\nCONFIG_IKCONFIG=y\n# CONFIG_PREEMPT_RT is not set\n"

// Code returns n bytes that look like x86 code to the xz BCJ
// filter: near calls and jumps (E8, E9) with 32-bit displacements among
// other bytes, so that a decoder that skips the filter gets them wrong.
func Code(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, n+8)
	for len(b) < n {
		switch r.IntN(4) {
		case 0:
			b = append(b, 0xe8)
			b = binary.LittleEndian.AppendUint32(b, uint32(r.IntN(1<<20)))
		case 1:
			b = append(b, 0xe9, 0x10, 0x00, 0x00, 0x00)
		default:
			b = append(b, []byte{0x48, 0x89, 0xe5, 0x55, 0xc3, 0x90, 0x0f, 0x1f}[r.IntN(8)])
		}
	}
	return b[:n]
}

// BzImage returns a bzImage (boot protocol 2.15, release Release) whose
// compressed kernel is payload, placed after some stand-in decompressor
// code as in a real image. The offsets are those of
// Documentation/arch/x86/boot.rst.
func BzImage(payload []byte) []byte {
	const pm = 5 * 512 // the protected-mode code: setup_sects 0 means 4
	img := make([]byte, pm)
	binary.LittleEndian.PutUint16(img[0x1fe:], 0xaa55) // boot flag
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f) // boot protocol
	const at = 0x800
	binary.LittleEndian.PutUint16(img[0x20e:], at-0x200) // kernel_version
	copy(img[at:], Release+" (test@ktstr) #1 SMP\x00")
	img = append(img, Code(3, 0x300)...)
	binary.LittleEndian.PutUint32(img[0x248:], 0x300) // payload_offset
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, payload...)
	return append(img, Code(4, 0x100)...) // the decompressor's data
}

// WithSize appends the unpacked size, as Linux does to every payload
// but gzip.
func WithSize(compressed []byte, size int) []byte {
	return binary.LittleEndian.AppendUint32(compressed, uint32(size))
}

// Gzip, Zstd, LZ4 (legacy frames), LZMA and XZ (without the x86 BCJ
// filter, which Go cannot write) pack a payload as Linux does, its size
// appended to all but gzip. Writing to memory cannot fail, so their
// errors are not looked at.

func Gzip(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return out.Bytes()
}

func Zstd(b []byte, opts ...zstd.EOption) []byte {
	e, _ := zstd.NewWriter(nil, opts...)
	return WithSize(e.EncodeAll(b, nil), len(b))
}

func LZ4(b []byte) []byte {
	var out bytes.Buffer
	zw := lz4.NewWriter(&out)
	_ = zw.Apply(lz4.LegacyOption(true))
	_, _ = zw.Write(b)
	_ = zw.Close()
	return WithSize(out.Bytes(), len(b))
}

func LZMA(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := lzma.WriterConfig{EOSMarker: true}.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return WithSize(out.Bytes(), len(b))
}

func XZ(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return WithSize(out.Bytes(), len(b))
}

// Vmlinux returns a stand-in for an uncompressed kernel: code, the
// embedded config as kernel/configs.c lays it out (if config is not
// nil), and more code.
func Vmlinux(config []byte) []byte {
	var v bytes.Buffer
	v.Write(Code(1, 96<<10))
	if config != nil {
		v.WriteString("IKCFG_ST")
		v.Write(Gzip(config))
		v.WriteString("IKCFG_ED")
	}
	v.Write(Code(2, 32<<10))
	return v.Bytes()
}
