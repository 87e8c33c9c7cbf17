package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestOpenBuildTreeImage: a bzImage where `make` leaves it,
// TREE/arch/x86/boot/bzImage, brings TREE/.config when the tree's
// include/config/kernel.release is the image's release, so pre-flight
// reads the config a developer's build used; a tree rebuilt to another
// release since, an image elsewhere, or a .config that is no regular
// file bring none (the run then goes without pre-flight, as before).
func TestOpenBuildTreeImage(t *testing.T) {
	const release = "6.13.0-rc1-scx+"
	tree := func(t *testing.T, kernelRelease string) (string, string) {
		t.Helper()
		root := t.TempDir()
		boot := filepath.Join(root, "arch", "x86", "boot")
		require.NoError(t, os.MkdirAll(boot, 0o755))
		image := filepath.Join(boot, "bzImage")
		require.NoError(t, os.WriteFile(image, fakeBzImage(release+" (dev@box) #3 SMP PREEMPT_DYNAMIC"), 0o644))
		require.NoError(t, os.MkdirAll(filepath.Join(root, "include", "config"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, "include", "config", "kernel.release"), []byte(kernelRelease+"\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(root, ".config"), []byte("CONFIG_SCHED_CLASS_EXT=y\nCONFIG_VIRTIO_CONSOLE=y\n"), 0o644))
		beforeBuild(t, filepath.Join(root, ".config"))
		return root, image
	}

	t.Run("same release", func(t *testing.T) {
		root, image := tree(t, release)
		s, err := Open(t.Context(), image, "", t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, ".config"), s.Kernel.Config)
		require.NotNil(t, s.Config())
		assert.Equal(t, "y", s.Config()["SCHED_CLASS_EXT"])
		// Pre-flight now judges the build: this .config lacks the
		// virtio core. Control: the options a run needs pass.
		assert.ErrorContains(t, s.Config().Preflight(Needs{SchedExt: true}, s.Modules, "kernel "+s.Release), "CONFIG_VIRTIO is not set")
		full := "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\nCONFIG_SCHED_CLASS_EXT=y\n"
		require.NoError(t, os.WriteFile(filepath.Join(root, ".config"), []byte(full), 0o644))
		beforeBuild(t, filepath.Join(root, ".config"))
		s, err = Open(t.Context(), image, "", t.TempDir())
		require.NoError(t, err)
		assert.NoError(t, s.Config().Preflight(Needs{SchedExt: true}, s.Modules, "kernel "+s.Release))
	})
	t.Run(".config changed since the build", func(t *testing.T) {
		// make menuconfig after the build: kernel.release stays, the
		// .config is newer than the image.
		root, image := tree(t, release)
		later := time.Now().Add(time.Minute)
		require.NoError(t, os.Chtimes(filepath.Join(root, ".config"), later, later))
		s, err := Open(t.Context(), image, "", t.TempDir())
		require.NoError(t, err)
		assert.Nil(t, s.Config())
	})
	t.Run("tree rebuilt to another release", func(t *testing.T) {
		_, image := tree(t, "6.13.0-rc2-scx+")
		s, err := Open(t.Context(), image, "", t.TempDir())
		require.NoError(t, err)
		assert.Empty(t, s.Kernel.Config)
		assert.Nil(t, s.Config())
	})
	t.Run("image copied out of the tree", func(t *testing.T) {
		_, image := tree(t, release)
		b, err := os.ReadFile(image)
		require.NoError(t, err)
		elsewhere := filepath.Join(t.TempDir(), "bzImage")
		require.NoError(t, os.WriteFile(elsewhere, b, 0o644))
		s, err := Open(t.Context(), elsewhere, "", t.TempDir())
		require.NoError(t, err)
		assert.Nil(t, s.Config())
	})
	t.Run(".config is a directory", func(t *testing.T) {
		root, image := tree(t, release)
		require.NoError(t, os.Remove(filepath.Join(root, ".config")))
		require.NoError(t, os.Mkdir(filepath.Join(root, ".config"), 0o755))
		s, err := Open(t.Context(), image, "", t.TempDir())
		require.NoError(t, err)
		assert.Nil(t, s.Config())
	})
	t.Run("kernel.release is a FIFO", func(t *testing.T) {
		root, image := tree(t, release)
		rel := filepath.Join(root, "include", "config", "kernel.release")
		require.NoError(t, os.Remove(rel))
		require.NoError(t, unix.Mkfifo(rel, 0o644))
		s, err := Open(t.Context(), image, "", t.TempDir()) // would block reading a FIFO
		require.NoError(t, err)
		assert.Nil(t, s.Config())
	})
}

// TestOpenVmlinux: a build tree's vmlinux (an ELF file) given as
// --kernel is refused with the bzImage to give instead; any other file
// that is no bzImage is refused as such (the control).
func TestOpenVmlinux(t *testing.T) {
	dir := t.TempDir()
	vmlinux := filepath.Join(dir, "vmlinux")
	require.NoError(t, os.WriteFile(vmlinux, append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 4096)...), 0o644))
	text := filepath.Join(dir, "text")
	require.NoError(t, os.WriteFile(text, []byte("hello\n"), 0o644))

	_, err := Open(t.Context(), vmlinux, "", t.TempDir())
	require.ErrorIs(t, err, ErrNotKernel)
	assert.Contains(t, err.Error(), "give the tree's arch/x86/boot/bzImage")
	_, err = Open(t.Context(), text, "", t.TempDir())
	require.ErrorIs(t, err, ErrNotKernel)
	assert.Contains(t, err.Error(), "not a bzImage")
	assert.Equal(t, 1, strings.Count(err.Error(), text), "the path once: %v", err)
}

// beforeBuild dates the file at p an hour back, as a .config is older
// than the image built from it.
func beforeBuild(t *testing.T, p string) {
	t.Helper()
	past := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(p, past, past))
}
