package kernel

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
	xzbcj "github.com/xi2/xz"
)

// ErrNoEmbeddedConfig reports a bzImage that carries no config of its
// own: it was built without CONFIG_IKCONFIG=y (Debian's kernels build it
// as a module, configs.ko, whose copy is not in the image).
var ErrNoEmbeddedConfig = errors.New("no embedded config (the kernel was built without CONFIG_IKCONFIG=y)")

// Bounds on what EmbeddedConfig unpacks: a guest kernel's vmlinux is
// tens of MiB; the config sits in .rodata, after the code.
const (
	maxVmlinux   = 512 << 20 // most bytes of the payload unpacked while looking for the config
	maxDictBytes = 256 << 20 // most window or dictionary memory a payload may ask for
)

// ikconfigStart opens the embedded config: the marker kernel/configs.c
// puts before it, then the gzip magic and method of the config itself
// (scripts/extract-ikconfig looks for the same bytes).
var (
	ikconfigStart = []byte("IKCFG_ST\x1f\x8b\x08")
	ikconfigEnd   = []byte("IKCFG_ED")
)

// Setup-header fields that locate the compressed kernel (boot protocol
// 2.08 and later).
const (
	offSetupSects    = 0x1f1 // u8: 512-byte setup sectors after the boot sector (0 means 4)
	offVersion       = 0x206 // u16 boot protocol version
	offPayloadOffset = 0x248 // u32, from the start of the protected-mode code
	offPayloadLength = 0x24c // u32
)

// EmbeddedConfig returns the .config that a kernel built with
// CONFIG_IKCONFIG=y carries in its image (what /proc/config.gz shows
// once it runs), read from the bzImage without booting it: it unpacks
// the compressed kernel as far as the config (gzip, zstd, xz, lz4,
// bzip2 or lzma, as Linux builds them) and unpacks the config. It
// returns ErrNoEmbeddedConfig when the image has none; any other error
// says why the image could not be read. Memory and work are bounded
// whatever the image holds.
func EmbeddedConfig(image []byte) ([]byte, error) {
	payload, err := bzPayload(image)
	if err != nil {
		return nil, err
	}
	vmlinux, closeFn, err := unpacker(payload)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	br := bufio.NewReaderSize(&boundedReader{r: vmlinux, left: maxVmlinux}, 1<<20)
	if err := skipTo(br, ikconfigStart); err != nil {
		return nil, err
	}
	_, _ = br.Discard(len("IKCFG_ST"))
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("embedded config: %w", err)
	}
	zr.Multistream(false)
	config, err := readAllLimited(zr, maxConfig)
	if err != nil {
		return nil, fmt.Errorf("embedded config: %w", err)
	}
	// flate reads no further than its stream from a ByteReader, so the
	// end marker is next.
	end := make([]byte, len(ikconfigEnd))
	if _, err := io.ReadFull(br, end); err != nil || !bytes.Equal(end, ikconfigEnd) {
		return nil, fmt.Errorf("embedded config: its gzip stream is not followed by %q: the image is damaged", ikconfigEnd)
	}
	return config, nil
}

// bzPayload returns a bzImage's compressed kernel, as its setup header
// locates it.
func bzPayload(image []byte) ([]byte, error) {
	if _, err := Release(image); err != nil {
		return nil, err
	}
	if v := binary.LittleEndian.Uint16(image[offVersion:]); v < 0x208 {
		return nil, fmt.Errorf("bzImage boot protocol %d.%02d is older than 2.08: it does not say where its compressed kernel is", v>>8, v&0xff)
	}
	sects := int(image[offSetupSects])
	if sects == 0 {
		sects = 4
	}
	start := (sects + 1) * 512
	off := int64(binary.LittleEndian.Uint32(image[offPayloadOffset:]))
	n := int64(binary.LittleEndian.Uint32(image[offPayloadLength:]))
	if n < 8 || int64(start)+off+n > int64(len(image)) {
		return nil, fmt.Errorf("bzImage compressed kernel (%d bytes at %#x) is outside the %d-byte image: the image is damaged", n, int64(start)+off, len(image))
	}
	return image[int64(start)+off : int64(start)+off+n], nil
}

// unpacker returns a reader of what payload unpacks to, by the magic it
// starts with (the compressions of Linux's CONFIG_KERNEL_*). Linux
// appends the unpacked size, 4 bytes, to every one but gzip (whose own
// trailer holds it): it is cut off, so that a kernel with no config
// reads to a clean end.
func unpacker(payload []byte) (io.Reader, func(), error) {
	src := bytes.NewReader(payload[:len(payload)-4])
	nop := func() {}
	switch {
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		r, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, nil, fmt.Errorf("gzip-compressed kernel: %w", err)
		}
		return r, nop, nil
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxDictBytes), zstd.WithDecoderMaxMemory(maxVmlinux))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd-compressed kernel: %w", err)
		}
		return d, d.Close, nil
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		// Linux packs xz with the x86 BCJ filter, which only an XZ
		// Embedded decoder (the one Linux unpacks itself with) reads.
		r, err := xzbcj.NewReader(src, maxDictBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("xz-compressed kernel: %w", err)
		}
		r.Multistream(false)
		return r, nop, nil
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}):
		return lz4.NewReader(src), nop, nil
	case bytes.HasPrefix(payload, []byte("BZh")):
		return bzip2.NewReader(src), nop, nil
	case bytes.HasPrefix(payload, []byte{0x5d, 0, 0}):
		r, err := lzma.ReaderConfig{DictCap: maxDictBytes}.NewReader(src)
		if err != nil {
			return nil, nil, fmt.Errorf("lzma-compressed kernel: %w", err)
		}
		return r, nop, nil
	case bytes.HasPrefix(payload, []byte{0x89, 'L', 'Z', 'O'}):
		return nil, nil, errors.New("the kernel is LZO-compressed (CONFIG_KERNEL_LZO), which ktstr cannot unpack: give its config with the image (a directory holding boot/vmlinuz-RELEASE and boot/config-RELEASE, or arch/x86/boot/bzImage in its build tree)")
	}
	return nil, nil, fmt.Errorf("the compressed kernel starts % x, no compression Linux builds with: the image is damaged", payload[:min(len(payload), 6)])
}

// skipTo reads r up to the first occurrence of marker, or fails with
// ErrNoEmbeddedConfig at the end of r.
func skipTo(r *bufio.Reader, marker []byte) error {
	for {
		// Keep the last len(marker)-1 bytes in the buffer so that a
		// marker split across two fills is still found.
		buf, err := r.Peek(r.Size())
		if i := bytes.Index(buf, marker); i >= 0 {
			_, _ = r.Discard(i)
			return nil
		}
		switch {
		case err == nil || errors.Is(err, bufio.ErrBufferFull):
			_, _ = r.Discard(len(buf) - (len(marker) - 1))
		case errors.Is(err, io.EOF):
			return ErrNoEmbeddedConfig
		default:
			return fmt.Errorf("unpacking the kernel: %w", err)
		}
	}
}

// boundedReader reads r up to left bytes, then fails: a payload that
// unpacks without end must not be read to its end.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("the kernel unpacks to more than %d MiB with no config in them", maxVmlinux>>20)
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}
