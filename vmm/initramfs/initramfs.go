// Package initramfs writes the compressed newc cpio archives a live run
// boots with: the guest agent as /init plus any extra files (a scheduler
// binary, payloads).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits before the first arrow: it packs the program that
// produces the bytes. The archive is deterministic (fixed inode numbers,
// zero timestamps, uid/gid 0) so the same inputs give the same image.
package initramfs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"
)

// Compression selects how the cpio stream is compressed. Debian's
// kernels decompress both gzip and zstd initramfs images
// (CONFIG_RD_GZIP, CONFIG_RD_ZSTD).
type Compression int

// Supported compressions.
const (
	Zstd Compression = iota // zstd frames (the default: fastest to unpack)
	Gzip                    // gzip
	None                    // plain cpio, for tests and inspection
)

// String returns the compression's name.
func (c Compression) String() string {
	switch c {
	case Zstd:
		return "zstd"
	case Gzip:
		return "gzip"
	case None:
		return "none"
	default:
		return fmt.Sprintf("Compression(%d)", int(c))
	}
}

// Writer writes a compressed newc cpio archive. Parent directories of
// every file are created on demand. Close must be called to write the
// trailer and flush the compressor.
type Writer struct {
	comp   io.WriteCloser // compressor, or a no-op closer for None
	cw     *cpio.Writer
	names  map[string]bool // entries written so far
	err    error           // first error; later calls return it
	closed bool
}

// NewWriter returns a Writer that compresses the archive onto w.
func NewWriter(w io.Writer, c Compression) (*Writer, error) {
	var comp io.WriteCloser
	switch c {
	case Zstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("initramfs: start zstd encoder: %w", err)
		}
		comp = zw
	case Gzip:
		comp = gzip.NewWriter(w)
	case None:
		comp = nopCloser{w}
	default:
		return nil, fmt.Errorf("initramfs: unknown compression %v", c)
	}
	return &Writer{comp: comp, cw: cpio.NewWriter(comp), names: map[string]bool{}}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// clean turns name into the form the kernel's initramfs unpacker expects:
// relative, slash-separated, without "." or ".." elements.
func clean(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("initramfs: invalid entry name %q", name)
	}
	c := strings.TrimPrefix(path.Clean("/"+name), "/")
	if c == "" {
		return "", fmt.Errorf("initramfs: entry name %q names the root", name)
	}
	return c, nil
}

// AddDir adds a directory (and its missing parents) with permission
// bits perm.
func (w *Writer) AddDir(name string, perm os.FileMode) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	return w.dir(n, perm)
}

func (w *Writer) dir(n string, perm os.FileMode) error {
	if w.names[n] {
		return nil
	}
	if parent := path.Dir(n); parent != "." {
		if err := w.dir(parent, 0o755); err != nil {
			return err
		}
	}
	w.names[n] = true
	return w.header(&cpio.Header{Name: n, Mode: cpio.TypeDir | cpio.FileMode(perm.Perm()), Links: 2})
}

// AddFile adds a regular file holding data with permission bits perm.
func (w *Writer) AddFile(name string, perm os.FileMode, data []byte) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if err := w.parent(n); err != nil {
		return err
	}
	if w.names[n] {
		return fmt.Errorf("initramfs: %s added twice", n)
	}
	w.names[n] = true
	if err := w.header(&cpio.Header{Name: n, Mode: cpio.TypeReg | cpio.FileMode(perm.Perm()), Size: int64(len(data)), Links: 1}); err != nil {
		return err
	}
	if _, err := w.cw.Write(data); err != nil {
		w.err = fmt.Errorf("initramfs: write %s: %w", n, err)
	}
	return w.err
}

// MaxHostFile bounds a host file AddHostFile packs (the guest agent is
// about 3 MiB, a sched_ext scheduler under 2 MiB); it is read whole.
const MaxHostFile = 256 << 20

// AddHostFile adds the host file src as name, keeping its permission
// bits; src is read as ReadHostFile reads it.
func (w *Writer) AddHostFile(name, src string) error {
	data, perm, err := ReadHostFile(src)
	if err != nil {
		return fmt.Errorf("initramfs: %s for %s: %w", src, name, err)
	}
	return w.AddFile(name, perm, data)
}

// ReadHostFile reads the host file src whole and returns it with its
// permission bits. src must be a regular file of at most MaxHostFile
// bytes: it is opened without blocking and judged by what was opened,
// so a FIFO or a device there (or swapped in) is refused rather than
// waited on or read without end, and a file that grows while it is read
// is cut at the bound and refused.
func ReadHostFile(src string) ([]byte, os.FileMode, error) {
	f, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, errors.New("not a regular file; name the program itself")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxHostFile+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read: %w", err)
	}
	if len(data) > MaxHostFile {
		return nil, 0, fmt.Errorf("over the %d-byte bound of a packed file", MaxHostFile)
	}
	return data, fi.Mode().Perm(), nil
}

// AddSymlink adds a symbolic link name pointing at target.
func (w *Writer) AddSymlink(name, target string) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("initramfs: symlink %s has an empty target", n)
	}
	if err := w.parent(n); err != nil {
		return err
	}
	if w.names[n] {
		return fmt.Errorf("initramfs: %s added twice", n)
	}
	w.names[n] = true
	if err := w.header(&cpio.Header{Name: n, Mode: cpio.TypeSymlink | 0o777, Size: int64(len(target)), Links: 1}); err != nil {
		return err
	}
	if _, err := io.WriteString(w.cw, target); err != nil {
		w.err = fmt.Errorf("initramfs: write symlink %s: %w", n, err)
	}
	return w.err
}

func (w *Writer) parent(n string) error {
	if p := path.Dir(n); p != "." {
		return w.dir(p, 0o755)
	}
	return nil
}

func (w *Writer) header(h *cpio.Header) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("initramfs: entry added after Close")
	}
	// Inode numbers are assigned by the cpio writer in entry order, which
	// keeps the archive deterministic.
	if err := w.cw.WriteHeader(h); err != nil {
		w.err = fmt.Errorf("initramfs: write header for %s: %w", h.Name, err)
	}
	return w.err
}

// Close writes the cpio trailer and flushes the compressor. It does not
// close the underlying writer. Adding entries after Close is an error.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		if err := w.cw.Close(); err != nil {
			w.err = fmt.Errorf("initramfs: write trailer: %w", err)
		}
	}
	if err := w.comp.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("initramfs: flush compressor: %w", err)
	}
	return w.err
}

// File is one entry of an image built by Build.
type File struct {
	Name string      // path inside the guest, e.g. "init" or "bin/scheduler"
	Src  string      // host file to copy; used when Data is nil
	Data []byte      // contents; takes precedence over Src
	Perm os.FileMode // permission bits when Data is given (Src keeps its own)
}

// Build writes to dst a compressed image holding the mount points the
// agent uses (dev, proc, sys, tmp, run) and files, replacing dst
// atomically.
func Build(dst string, c Compression, files []File) error {
	tmp, err := os.CreateTemp(path.Dir(dst), ".initramfs-*")
	if err != nil {
		return fmt.Errorf("initramfs: create %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name())
	w, err := NewWriter(tmp, c)
	if err != nil {
		tmp.Close()
		return err
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run"} {
		if err := w.AddDir(d, 0o755); err != nil {
			tmp.Close()
			return err
		}
	}
	for _, f := range files {
		if f.Data != nil {
			err = w.AddFile(f.Name, f.Perm, f.Data)
		} else {
			err = w.AddHostFile(f.Name, f.Src)
		}
		if err != nil {
			tmp.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("initramfs: chmod %s: %w", dst, err)
	}
	// On disk before it is renamed into place: dst may be a cache entry
	// that later runs take as it is, and a crash must not leave it empty.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("initramfs: write %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("initramfs: write %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("initramfs: install %s: %w", dst, err)
	}
	return nil
}
