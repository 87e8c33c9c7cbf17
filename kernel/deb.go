package kernel

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	xzbcj "github.com/xi2/xz"
)

// A Debian binary package (.deb) is an ar archive: debian-binary,
// control.tar.*, data.tar.* (deb(5)). The kernel and its modules are in
// the data archive, compressed with xz (Debian 12) or zstd (newer).

// ErrNotDeb reports a file that is not a Debian package holding a kernel.
var ErrNotDeb = errors.New("not a Debian kernel package")

const (
	arMagic     = "!<arch>\n"
	arHeaderLen = 60
	// Bounds on what a package may make us hold or write: a kernel
	// image, one module, and everything unpacked from one package.
	maxModule   = 64 << 20
	maxUnpacked = 2 << 30
)

// debLimits bounds what one package may make ktstr do beyond the size of
// each file: how many files it writes (an empty file costs no byte of
// maxUnpacked, but an inode) and how many bytes its data.tar may
// decompress to in all, skipped members included (a member skipped is
// still decompressed to find the next header).
type debLimits struct {
	files   int
	tarSize int64
}

// defaultDebLimits are the bounds of a real package: Debian 6.12's
// linux-image holds about 4,500 files and its data.tar is under 500 MiB.
func defaultDebLimits() debLimits { return debLimits{files: 32768, tarSize: 4 << 30} }

// budgetReader reads r until left bytes have been read, then fails.
type budgetReader struct {
	r    io.Reader
	left int64
	what string
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%s decompresses to more than the bound: %w", b.what, errOverBound)
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

// IsDeb reports whether the file at path starts like an ar archive.
func IsDeb(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [len(arMagic)]byte
	_, err = io.ReadFull(f, m[:])
	return err == nil && string(m[:]) == arMagic
}

// debData returns a tar reader over the data archive of the .deb read
// from r, and a function that releases its decompressor.
func debData(r io.Reader, tarSize int64) (*tar.Reader, func(), error) {
	br := bufio.NewReader(r)
	var magic [len(arMagic)]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || string(magic[:]) != arMagic {
		return nil, nil, fmt.Errorf("%w: no ar header", ErrNotDeb)
	}
	for {
		var h [arHeaderLen]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return nil, nil, fmt.Errorf("%w: no data.tar member", ErrNotDeb)
		}
		if string(h[58:60]) != "`\n" {
			return nil, nil, fmt.Errorf("%w: a damaged ar member header", ErrNotDeb)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(h[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, nil, fmt.Errorf("%w: member %q has a bad size", ErrNotDeb, name)
		}
		body := io.LimitReader(br, size)
		if strings.HasPrefix(name, "data.tar") {
			return dataTar(name, body, tarSize)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrNotDeb, err)
		}
		if size%2 == 1 { // members are 2-byte aligned
			if _, err := br.Discard(1); err != nil {
				return nil, nil, fmt.Errorf("%w: %w", ErrNotDeb, err)
			}
		}
	}
}

// newXZReader reads the xz stream r with an LZMA2 dictionary of at most
// dictMax bytes. The header of each block says how large a dictionary
// its data needs, and a decoder that took that at its word (ulikunitz/xz
// allocates it whole: 1 GiB for a 224-byte file) lets a tiny file ask
// for gigabytes; this one (XZ Embedded's, as Linux has it) fails
// instead, with an error that says so.
func newXZReader(r io.Reader, dictMax uint32) (io.Reader, error) {
	x, err := xzbcj.NewReader(r, dictMax)
	if err != nil {
		return nil, xzLimitErr(err, dictMax)
	}
	return &xzLimitReader{r: x, dictMax: dictMax}, nil
}

// xzLimitErr says, of a stream that wants more dictionary than
// dictMax, how much was allowed.
func xzLimitErr(err error, dictMax uint32) error {
	if errors.Is(err, xzbcj.ErrMemlimit) {
		return fmt.Errorf("the xz stream asks for an LZMA2 dictionary over %d MiB, more than ktstr gives one: %w", dictMax>>20, err)
	}
	return err
}

// xzLimitReader is an xz reader whose errors say what xzLimitErr says:
// a later block may ask for more than the first.
type xzLimitReader struct {
	r       io.Reader
	dictMax uint32
}

func (x *xzLimitReader) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	return n, xzLimitErr(err, x.dictMax)
}

// dataTar opens the data archive by its compression suffix.
func dataTar(name string, r io.Reader, tarSize int64) (*tar.Reader, func(), error) {
	bounded := func(d io.Reader) *tar.Reader {
		return tar.NewReader(&budgetReader{r: d, left: tarSize, what: name})
	}
	switch strings.TrimPrefix(name, "data.tar") {
	case "":
		return bounded(r), func() {}, nil
	case ".xz":
		x, err := newXZReader(r, maxDictBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: data.tar.xz: %w", ErrNotDeb, err)
		}
		return bounded(x), func() {}, nil
	case ".zst":
		z, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: data.tar.zst: %w", ErrNotDeb, err)
		}
		return bounded(z), z.Close, nil
	case ".gz":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: data.tar.gz: %w", ErrNotDeb, err)
		}
		return bounded(g), func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: %s is compressed in a way this tool does not read (xz, zstd, gzip)", ErrNotDeb, name)
}

// UnpackDeb writes the kernel image (boot/vmlinuz-*), its config
// (boot/config-*) and its modules (lib/modules/**) from the Debian
// package at deb into dst, keeping their paths. Nothing else is
// written, no link is followed, and no path leaves dst. What it writes
// and decompresses is bounded (defaultDebLimits).
func UnpackDeb(deb, dst string) error { return unpackDeb(deb, dst, defaultDebLimits()) }

// unpackDeb is UnpackDeb within lim.
func unpackDeb(deb, dst string, lim debLimits) error {
	f, err := os.Open(deb)
	if err != nil {
		return fmt.Errorf("open %s: %w", deb, err)
	}
	defer f.Close()
	return unpackDebFrom(f, deb, dst, lim)
}

// unpackDebFrom is unpackDeb reading the package (named deb, for
// errors) from r.
func unpackDebFrom(r io.Reader, deb, dst string, lim debLimits) error {
	tr, release, err := debData(r, lim.tarSize)
	if err != nil {
		return fmt.Errorf("%s: %w", deb, err)
	}
	defer release()
	var total int64
	images, files := 0, 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errOverBound) {
			return fmt.Errorf("%s: %w: its data archive unpacks to more than %d MiB, which no kernel package does", deb, ErrNotDeb, lim.tarSize>>20)
		}
		if err != nil {
			return fmt.Errorf("%s: %w: the data archive is damaged: %w", deb, ErrNotDeb, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		dir, base := path.Split(name)
		keep := dir == "boot/" && (strings.HasPrefix(base, "vmlinuz-") || strings.HasPrefix(base, "config-")) ||
			strings.HasPrefix(name, "lib/modules/") || strings.HasPrefix(name, "usr/lib/modules/")
		if !keep {
			continue
		}
		limit := int64(maxModule)
		if dir == "boot/" {
			limit = maxImage
		}
		if h.Size > limit || total+h.Size > maxUnpacked {
			return fmt.Errorf("%s: %w: %s is %d bytes, over the bound of %d", deb, ErrNotDeb, name, h.Size, limit)
		}
		if files++; files > lim.files {
			return fmt.Errorf("%s: %w: it holds more than %d kernel files (boot/, lib/modules/), which no kernel package does", deb, ErrNotDeb, lim.files)
		}
		total += h.Size
		name = strings.TrimPrefix(name, "usr/") // merged-/usr packages
		out := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return fmt.Errorf("unpack %s: %w", deb, err)
		}
		if err := writeFrom(out, io.LimitReader(tr, limit)); err != nil {
			if errors.Is(err, errOverBound) {
				return fmt.Errorf("%s: %w: its data archive unpacks to more than %d MiB, which no kernel package does", deb, ErrNotDeb, lim.tarSize>>20)
			}
			return fmt.Errorf("unpack %s: %w", deb, err)
		}
		if strings.HasPrefix(base, "vmlinuz-") {
			images++
		}
	}
	if images == 0 {
		return fmt.Errorf("%s: %w: it holds no boot/vmlinuz-* (a linux-image-* package has one)", deb, ErrNotDeb)
	}
	return nil
}

func writeFrom(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ExtractDeb returns the boot/vmlinuz-* image and the boot/config-*
// file (nil if absent) of the Debian kernel package at deb, read in Go.
func ExtractDeb(deb string) (image, config []byte, err error) {
	f, err := os.Open(deb)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", deb, err)
	}
	defer f.Close()
	tr, release, err := debData(f, defaultDebLimits().tarSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", deb, err)
	}
	defer release()
	image, config, err = scanBoot(tr)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", deb, err)
	}
	if image == nil {
		return nil, nil, fmt.Errorf("%s: %w: it holds no boot/vmlinuz-*", deb, ErrNotDeb)
	}
	return image, config, nil
}
