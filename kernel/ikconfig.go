package kernel

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
	xzbcj "github.com/xi2/xz"

	"github.com/ktstr/ktstr/vmm/boot"
)

// ErrNoEmbeddedConfig reports a bzImage that carries no config of its
// own: it was built without CONFIG_IKCONFIG=y (Debian's kernels build it
// as a module, configs.ko, whose copy is not in the image).
var ErrNoEmbeddedConfig = errors.New("no embedded config (the kernel was built without CONFIG_IKCONFIG=y)")

// ErrDamagedImage reports a bzImage whose compressed kernel or embedded
// config cannot be read: cut, corrupted, or lying about its layout.
var ErrDamagedImage = errors.New("the image is damaged")

// Bounds on what EmbeddedConfig unpacks. A distribution's vmlinux is
// tens of MiB (Debian's 6.12 cloud kernel: 55 MiB) and the config sits in
// .rodata, after the code; Linux packs zstd with a window of at most
// 128 MiB (level 22), xz with a 32 MiB dictionary and lzma with 64 MiB.
const (
	maxVmlinux   = 256 << 20 // most bytes of the payload unpacked while looking for the config
	maxDictBytes = 128 << 20 // most window or dictionary memory a payload may ask for
)

// The embedded config is laid out by kernel/configs.c: this marker, the
// gzip-compressed .config, then ikconfigEnd. The gzip magic and method
// are part of what is looked for, as scripts/extract-ikconfig does.
const (
	ikconfigMarker = "IKCFG_ST"
	ikconfigStart  = ikconfigMarker + "\x1f\x8b\x08"
	ikconfigEnd    = "IKCFG_ED"
)

// EmbeddedConfig returns the .config that a kernel built with
// CONFIG_IKCONFIG=y carries in its image (what /proc/config.gz shows
// once it runs), read from the bzImage without booting it: it unpacks
// the compressed kernel as far as the config (gzip, zstd, xz, lz4,
// bzip2 or lzma, as Linux builds them) and unpacks the config. The rest
// of the compressed kernel is not read, so damage past the config goes
// unseen. It returns ErrNoEmbeddedConfig when the image has none, an
// error wrapping ErrDamagedImage when it cannot be read, ctx's error
// when ctx ends first, and otherwise an error that says why (an LZO
// kernel). Memory and work are bounded whatever the image holds.
func EmbeddedConfig(ctx context.Context, image []byte) ([]byte, error) {
	payload, err := bzPayload(image)
	if err != nil {
		return nil, err
	}
	vmlinux, closeFn, err := unpacker(ctx, payload)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	bounded := &boundedReader{ctx: ctx, r: vmlinux, left: maxVmlinux}
	br := bufio.NewReaderSize(bounded, 1<<20)
	if err := skipTo(br, []byte(ikconfigStart)); err != nil {
		// Read to its end with no config: a payload cut short can look
		// like that, but Linux appended what it unpacks to.
		if n := int64(maxVmlinux) - bounded.left; errors.Is(err, ErrNoEmbeddedConfig) && vmlinux.size >= 0 && n != vmlinux.size {
			return nil, fmt.Errorf("the compressed kernel unpacks to %d bytes, where its size trailer says %d: %w", n, vmlinux.size, ErrDamagedImage)
		}
		return nil, err
	}
	_, _ = br.Discard(len(ikconfigMarker))
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, damaged("embedded config", err)
	}
	zr.Multistream(false)
	config, err := readAllLimited(zr, maxConfig)
	if err != nil {
		return nil, damaged("embedded config", err)
	}
	// flate reads no further than its stream from a ByteReader, so the
	// end marker is next.
	end := make([]byte, len(ikconfigEnd))
	if _, err := io.ReadFull(br, end); err != nil || string(end) != ikconfigEnd {
		return nil, fmt.Errorf("embedded config: its gzip stream is not followed by %q: %w", ikconfigEnd, ErrDamagedImage)
	}
	if len(ParseConfig(config)) == 0 {
		return nil, fmt.Errorf("embedded config: it holds no CONFIG_ line: %w", ErrDamagedImage)
	}
	return config, nil
}

// damaged wraps a decoder's error as damage to the image.
func damaged(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %w (%w)", what, ErrDamagedImage, err)
}

// bzPayload returns a bzImage's compressed kernel, as its setup header
// locates it (vmm/boot.Payload): one pointing outside the image is
// damage, one too old to say is not.
func bzPayload(image []byte) ([]byte, error) {
	if _, err := Release(image); err != nil {
		return nil, err
	}
	payload, err := boot.Payload(image)
	switch {
	case errors.Is(err, boot.ErrPayloadOutside):
		return nil, fmt.Errorf("%w: %w", err, ErrDamagedImage)
	case err != nil:
		return nil, err
	}
	return payload, nil
}

// unpacker returns a reader of what payload unpacks to, by the magic it
// starts with (the compressions of Linux's CONFIG_KERNEL_*). Linux
// appends the unpacked size, 4 bytes, to every one but gzip (whose own
// trailer holds it): it is cut off, so that a kernel with no config
// reads to a clean end.
func unpacker(ctx context.Context, payload []byte) (*codecReader, func(), error) {
	src := bytes.NewReader(payload[:len(payload)-4])
	size := int64(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	nop := func() {}
	var r io.Reader
	var err error
	codec := ""
	closeFn := nop
	switch {
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		codec, size = "gzip", -1 // its own trailer, checked by gzip
		r, err = gzip.NewReader(bytes.NewReader(payload))
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		codec = "zstd"
		var d *zstd.Decoder
		d, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxDictBytes), zstd.WithDecoderMaxMemory(maxVmlinux))
		if err == nil {
			r, closeFn = d, d.Close
		}
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		// Linux packs xz with the x86 BCJ filter, which only an XZ
		// Embedded decoder (the one Linux unpacks itself with) reads.
		codec = "xz"
		var x *xzbcj.Reader
		if x, err = xzbcj.NewReader(src, maxDictBytes); err == nil {
			x.Multistream(false)
			r = x
		}
	case bytes.HasPrefix(payload, []byte(lz4LegacyMagic)):
		codec = "lz4"
		r = &lz4LegacyReader{ctx: ctx, src: src}
	case bytes.HasPrefix(payload, []byte("BZh")):
		codec = "bzip2"
		r = bzip2.NewReader(src)
	case payload[0] == 0x5d: // lc=3, lp=0, pb=2: what lzma(1) writes
		codec = "lzma"
		r, err = lzma.ReaderConfig{DictCap: maxDictBytes}.NewReader(src)
	case bytes.HasPrefix(payload, []byte{0x89, 'L', 'Z', 'O'}):
		return nil, nil, errors.New("the kernel is LZO-compressed (CONFIG_KERNEL_LZO), which ktstr cannot unpack: give its config with the image (a directory holding boot/vmlinuz-RELEASE and boot/config-RELEASE, or arch/x86/boot/bzImage in its build tree)")
	default:
		return nil, nil, fmt.Errorf("the compressed kernel starts % x, no compression Linux builds with: %w", payload[:6], ErrDamagedImage)
	}
	if err != nil {
		return nil, nil, damaged(codec+"-compressed kernel", err)
	}
	return &codecReader{codec: codec, r: r, size: size}, closeFn, nil
}

// codecReader names the compression in the errors of its reader, as
// damage to the image.
type codecReader struct {
	codec string
	r     io.Reader
	size  int64 // what the payload unpacks to, as Linux appended it; -1 for gzip
}

func (c *codecReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = damaged("unpacking the "+c.codec+"-compressed kernel", err)
	}
	return n, err
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
		case err == nil:
			_, _ = r.Discard(len(buf) - (len(marker) - 1))
		case errors.Is(err, io.EOF):
			return ErrNoEmbeddedConfig
		default:
			return err
		}
	}
}

// boundedReader reads r up to left bytes, then fails if r has more: a
// payload that unpacks without end must not be read to its end. It
// stops when ctx does, so that an interrupt is not held up by a slow
// decoder.
type boundedReader struct {
	ctx  context.Context
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.left <= 0 {
		var one [1]byte
		if n, err := io.ReadFull(b.r, one[:]); n == 0 && err != nil {
			return 0, err // io.EOF: the payload ends at the bound
		}
		return 0, fmt.Errorf("the kernel unpacks to more than %d MiB with no config in them, and ktstr looks no further", maxVmlinux>>20)
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

// An lz4 legacy frame (lz4 -l, as Linux packs it) is lz4LegacyMagic,
// then blocks, each a little-endian u32 compressed size and the block;
// a block unpacks to at most lz4LegacyBlock and takes at most
// lz4LegacyMaxCompressed (LZ4's compressBound of it).
const (
	lz4LegacyMagic         = "\x02\x21\x4c\x18"
	lz4LegacyBlock         = 8 << 20
	lz4LegacyMaxCompressed = lz4LegacyBlock + lz4LegacyBlock/255 + 16
)

// lz4LegacyReader reads lz4 legacy frames with the lz4 package's block
// decoder. Its frame reader (pierrec/lz4 v4.1.33) calls itself once per
// repeated frame magic, so a payload of nothing but magics overflows the
// stack, which no recover catches; this loop takes them as it finds them.
type lz4LegacyReader struct {
	ctx  context.Context // checked once a block or magic: a payload of only magics returns nothing for long
	src  io.Reader
	size [4]byte // a block's size (a field: a local would escape, once a block)
	in   []byte
	out  []byte
	rest []byte // unpacked bytes not yet read
}

func (l *lz4LegacyReader) Read(p []byte) (int, error) {
	for len(l.rest) == 0 {
		if err := l.ctx.Err(); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(l.src, l.size[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("lz4 block size: %w", err)
		}
		if string(l.size[:]) == lz4LegacyMagic {
			continue // another frame
		}
		n := binary.LittleEndian.Uint32(l.size[:])
		switch {
		case n == 0:
			return 0, errors.New("an empty lz4 block, which lz4 never writes")
		case n > lz4LegacyMaxCompressed:
			return 0, fmt.Errorf("lz4 block of %d bytes, over the %d a legacy block may take", n, lz4LegacyMaxCompressed)
		}
		if uint32(cap(l.in)) < n {
			l.in = make([]byte, n)
		}
		if l.out == nil {
			l.out = make([]byte, lz4LegacyBlock)
		}
		if _, err := io.ReadFull(l.src, l.in[:n]); err != nil {
			return 0, fmt.Errorf("lz4 block: %w", err)
		}
		m, err := lz4.UncompressBlock(l.in[:n], l.out)
		if err != nil {
			return 0, fmt.Errorf("lz4 block: %w", err)
		}
		l.rest = l.out[:m]
	}
	n := copy(p, l.rest)
	l.rest = l.rest[n:]
	return n, nil
}
