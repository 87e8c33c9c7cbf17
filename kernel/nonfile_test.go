package kernel

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// within runs f and fails the test if it has not returned after d: what
// it guards against is a read that blocks on a FIFO for ever.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still reading after %v: a FIFO or device was waited on", d)
	}
}

// nonFiles are what a hostile or crashed tree may hold where a file is
// expected: a FIFO, and a symlink to a device that never ends.
var nonFiles = []struct {
	name string
	make func(t *testing.T, p string)
}{
	{"fifo", func(t *testing.T, p string) { require.NoError(t, syscall.Mkfifo(p, 0o644)) }},
	{"symlink to /dev/zero", func(t *testing.T, p string) { require.NoError(t, os.Symlink("/dev/zero", p)) }},
}

// TestTreeRefusesNonFiles: a module tree's modules.builtin and a kernel
// directory's boot/config-RELEASE that are a FIFO or /dev/zero are
// refused at once, with the path; the same trees with regular files
// (the control) open.
func TestTreeRefusesNonFiles(t *testing.T) {
	t.Run("control: modules.builtin a file", func(t *testing.T) {
		m, err := OpenModules(moduleTree(t, t.TempDir(), ".ko", true), testRelease)
		require.NoError(t, err)
		assert.True(t, m.Builtin("virtio"))
	})
	t.Run("control: boot/config a file", func(t *testing.T) {
		dir := kernelDir(t)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "boot", "config-"+testRelease), []byte("CONFIG_VIRTIO=y\n"), 0o644))
		s, err := Open(t.Context(), dir, "", t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, "y", s.Config()["VIRTIO"])
	})
	for _, nf := range nonFiles {
		t.Run("modules.builtin "+nf.name, func(t *testing.T) {
			dir := moduleTree(t, t.TempDir(), ".ko", false)
			nf.make(t, filepath.Join(dir, "modules.builtin"))
			within(t, 5*time.Second, func() {
				_, err := OpenModules(dir, testRelease)
				require.ErrorIs(t, err, ErrBadModules)
				assert.Contains(t, err.Error(), "modules.builtin is not a regular file")
			})
		})
		t.Run("boot/config "+nf.name, func(t *testing.T) {
			dir := kernelDir(t)
			nf.make(t, filepath.Join(dir, "boot", "config-"+testRelease))
			within(t, 5*time.Second, func() {
				_, err := Open(t.Context(), dir, "", t.TempDir())
				require.Error(t, err)
				assert.Contains(t, err.Error(), "is not a regular file")
			})
		})
	}
}

// TestCacheSkipsNonFiles: a cache entry whose kernel.json is a FIFO or
// /dev/zero is skipped by List (the good entry beside it is listed), a
// build.json that is one is refused, and a cached vmlinuz swapped for
// one is refused when read.
func TestCacheSkipsNonFiles(t *testing.T) {
	for _, nf := range nonFiles {
		t.Run(nf.name, func(t *testing.T) {
			dir := t.TempDir()
			good, err := Install(dir, fakeBzImage("6.12.1-good #1"), nil, Kernel{})
			require.NoError(t, err)
			bad, err := Install(dir, fakeBzImage("6.12.2-bad #1"), nil, Kernel{})
			require.NoError(t, err)
			meta := filepath.Join(filepath.Dir(bad.Path), "kernel.json")
			require.NoError(t, os.Remove(meta))
			nf.make(t, meta)
			within(t, 5*time.Second, func() {
				ks, err := List(dir)
				require.NoError(t, err)
				require.Len(t, ks, 1)
				assert.Equal(t, good.Release, ks[0].Release)
			})

			build := t.TempDir()
			nf.make(t, filepath.Join(build, manifestName))
			within(t, 5*time.Second, func() {
				_, err := readManifest(build)
				assert.ErrorContains(t, err, "is not a regular file")
			})

			require.NoError(t, os.Remove(good.Path))
			nf.make(t, good.Path)
			within(t, 5*time.Second, func() {
				_, err := CachedConfig(t.Context(), good)
				assert.ErrorContains(t, err, "is not a regular file")
			})
		})
	}
}

// kernelDir writes DIR/boot/vmlinuz-RELEASE, a kernel directory as a
// package unpacks to.
func kernelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-"+testRelease), fakeBzImage(testRelease+" #1"), 0o644))
	return dir
}
