package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// entry is one archive member as read back.
type entry struct {
	mode cpio.FileMode
	data string
}

// readBack decompresses and parses an archive with the cpio reader.
func readBack(t *testing.T, b []byte, c Compression) (map[string]entry, []string) {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	switch c {
	case Zstd:
		zr, err := zstd.NewReader(r)
		require.NoError(t, err)
		defer zr.Close()
		r = zr
	case Gzip:
		gr, err := gzip.NewReader(r)
		require.NoError(t, err)
		r = gr
	}
	cr := cpio.NewReader(r)
	got := map[string]entry{}
	var order []string
	for {
		h, err := cr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(cr)
		require.NoError(t, err)
		if h.Mode&cpio.ModeType == cpio.TypeSymlink {
			data = []byte(h.Linkname)
		}
		got[h.Name] = entry{h.Mode, string(data)}
		order = append(order, h.Name)
	}
	return got, order
}

func TestWriterRoundTrip(t *testing.T) {
	for _, c := range []Compression{Zstd, Gzip, None} {
		t.Run(c.String(), func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, c)
			require.NoError(t, err)
			require.NoError(t, w.AddFile("/init", 0o755, []byte("agent")))
			require.NoError(t, w.AddFile("bin/sched/scx", 0o700, []byte("scheduler bytes")))
			require.NoError(t, w.AddFile("empty", 0o644, []byte{}))
			require.NoError(t, w.AddSymlink("sbin/init", "/init"))
			require.NoError(t, w.Close())
			require.NoError(t, w.Close(), "a second Close is harmless")

			got, order := readBack(t, buf.Bytes(), c)
			assert.Equal(t, []string{"init", "bin", "bin/sched", "bin/sched/scx", "empty", "sbin", "sbin/init"}, order,
				"parents come before children, names are relative")
			assert.Equal(t, entry{cpio.TypeReg | 0o755, "agent"}, got["init"])
			assert.Equal(t, entry{cpio.TypeReg | 0o700, "scheduler bytes"}, got["bin/sched/scx"])
			assert.Equal(t, entry{cpio.TypeReg | 0o644, ""}, got["empty"])
			assert.Equal(t, entry{cpio.TypeDir | 0o755, ""}, got["bin/sched"])
			assert.Equal(t, cpio.FileMode(cpio.TypeSymlink), got["sbin/init"].mode&cpio.ModeType)
		})
	}
}

func TestWriterIsDeterministic(t *testing.T) {
	build := func() []byte {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Zstd)
		require.NoError(t, err)
		require.NoError(t, w.AddFile("init", 0o755, bytes.Repeat([]byte("x"), 10000)))
		require.NoError(t, w.Close())
		return buf.Bytes()
	}
	assert.Equal(t, build(), build())
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		add  func(w *Writer) error
	}{
		{"empty name", func(w *Writer) error { return w.AddFile("", 0o644, nil) }},
		{"root", func(w *Writer) error { return w.AddFile("/", 0o644, nil) }},
		{"NUL in name", func(w *Writer) error { return w.AddFile("a\x00b", 0o644, nil) }},
		{"duplicate", func(w *Writer) error {
			require.NoError(t, w.AddFile("a", 0o644, nil))
			return w.AddFile("/a", 0o644, nil)
		}},
		{"empty symlink target", func(w *Writer) error { return w.AddSymlink("l", "") }},
		{"after close", func(w *Writer) error {
			require.NoError(t, w.Close())
			return w.AddFile("late", 0o644, nil)
		}},
		{"missing host file", func(w *Writer) error {
			return w.AddHostFile("x", filepath.Join(t.TempDir(), "absent"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWriter(io.Discard, None)
			require.NoError(t, err)
			assert.Error(t, tt.add(w))
		})
	}
	// Positive control: the same Writer calls with sound arguments succeed.
	w, err := NewWriter(io.Discard, None)
	require.NoError(t, err)
	require.NoError(t, w.AddFile("a", 0o644, nil))
	require.NoError(t, w.AddSymlink("l", "a"))
	require.NoError(t, w.Close())

	_, err = NewWriter(io.Discard, Compression(42))
	assert.Error(t, err)
}

func TestDotDotStaysInside(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, None)
	require.NoError(t, err)
	require.NoError(t, w.AddFile("../../etc/x/../passwd", 0o644, []byte("p")))
	require.NoError(t, w.Close())
	got, _ := readBack(t, buf.Bytes(), None)
	assert.Contains(t, got, "etc/passwd")
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "sched")
	require.NoError(t, os.WriteFile(src, []byte("ELF"), 0o750))
	dst := filepath.Join(dir, "initrd.zst")
	require.NoError(t, Build(dst, Zstd, []File{
		{Name: "init", Data: []byte("agent"), Perm: 0o755},
		{Name: "bin/scheduler", Src: src},
	}))
	b, err := os.ReadFile(dst)
	require.NoError(t, err)
	got, _ := readBack(t, b, Zstd)
	assert.Equal(t, entry{cpio.TypeReg | 0o755, "agent"}, got["init"])
	assert.Equal(t, entry{cpio.TypeReg | 0o750, "ELF"}, got["bin/scheduler"])
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run"} {
		assert.Equal(t, cpio.FileMode(cpio.TypeDir|0o755), got[d].mode, d)
	}

	// A failing Build leaves no file behind.
	bad := filepath.Join(dir, "bad.zst")
	assert.Error(t, Build(bad, Zstd, []File{{Name: "x", Src: filepath.Join(dir, "absent")}}))
	assert.NoFileExists(t, bad)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary files left: %v", entries)
}

// TestAddHostFileRefusesNonFiles: a host file that is a FIFO, a link to
// /dev/zero, a directory or over MaxHostFile (a sparse file one byte
// past it) is refused at once, with its path; a regular file (the
// control) is packed with its permission bits.
func TestAddHostFileRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o755))
	zero := filepath.Join(dir, "zero")
	require.NoError(t, os.Symlink("/dev/zero", zero))
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(MaxHostFile+1))
	require.NoError(t, f.Close())
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("ELF"), 0o750))
	for _, tc := range []struct{ name, src, want string }{
		{"control: a file", good, ""},
		{"fifo", fifo, "not a regular file"},
		{"link to /dev/zero", zero, "not a regular file"},
		{"directory", dir, "not a regular file"},
		{"one byte past the bound", big, "over the 268435456-byte bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, None)
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- w.AddHostFile("bin/x", tc.src) }()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("AddHostFile still reading after 10s")
			}
			if tc.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
				assert.Contains(t, err.Error(), tc.src)
				return
			}
			require.NoError(t, err)
			require.NoError(t, w.Close())
			got, _ := readBack(t, buf.Bytes(), None)
			assert.Equal(t, entry{cpio.TypeReg | 0o750, "ELF"}, got["bin/x"])
		})
	}
}

// fullDisk accepts left bytes, then fails as a full disk does.
type fullDisk struct{ left int }

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) > d.left {
		n := d.left
		d.left = 0
		return n, syscall.ENOSPC
	}
	d.left -= len(p)
	return len(p), nil
}

// TestWriterFullDisk: an archive whose output fills up partway fails
// with ENOSPC, from the Add that hit it or from Close, in every
// compression; with room (the control) the same archive closes.
func TestWriterFullDisk(t *testing.T) {
	data := make([]byte, 1<<20) // incompressible: every compression must write it
	rand.New(rand.NewSource(1)).Read(data)
	for _, c := range []Compression{Zstd, Gzip, None} {
		for _, room := range []int{100, 4 << 10, 1 << 30} {
			t.Run(fmt.Sprintf("%v/%d", c, room), func(t *testing.T) {
				w, err := NewWriter(&fullDisk{left: room}, c)
				require.NoError(t, err)
				addErr := w.AddFile("init", 0o755, data)
				closeErr := w.Close()
				if room == 1<<30 {
					require.NoError(t, addErr)
					require.NoError(t, closeErr)
					return
				}
				assert.ErrorIs(t, closeErr, syscall.ENOSPC, "add: %v", addErr)
			})
		}
	}
}
