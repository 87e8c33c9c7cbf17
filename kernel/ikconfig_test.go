package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	kt "github.com/ktstr/ktstr/internal/kerneltest"
)

var regenFixtures = flag.Bool("ikconfig.regen", false, "rewrite testdata/ikconfig/* with the xz and bzip2 commands")

// fixture reads testdata/ikconfig/name: kt.Vmlinux([]byte(kt.Config))
// compressed by the command Linux uses for that compression, which Go
// has no writer for (xz with the x86 BCJ filter, bzip2). -ikconfig.regen
// rewrites them.
func fixture(t *testing.T, name string, cmd ...string) []byte {
	p := filepath.Join("testdata", "ikconfig", name)
	if *regenFixtures {
		c := exec.Command(cmd[0], cmd[1:]...)
		c.Stdin = bytes.NewReader(kt.Vmlinux([]byte(kt.Config)))
		out, err := c.Output()
		require.NoError(t, err, "%v", cmd)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, out, 0o644))
	}
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return kt.WithSize(b, len(kt.Vmlinux([]byte(kt.Config))))
}

func TestEmbeddedConfig(t *testing.T) {
	v := kt.Vmlinux([]byte(kt.Config))
	for _, c := range []struct {
		name    string
		payload []byte
	}{
		{"gzip", kt.Gzip(v)},
		{"zstd", kt.Zstd(v)},
		{"zstd level 22 as Linux packs it", kt.Zstd(v, zstd.WithEncoderLevel(zstd.SpeedBestCompression))},
		{"lz4 legacy", kt.LZ4(v)},
		{"lzma", kt.LZMA(v)},
		{"xz", kt.XZ(v)},
		// Linux packs xz as scripts/xz_wrap.sh does: x86 BCJ, then LZMA2.
		{"xz with the x86 BCJ filter", fixture(t, "vmlinux.xz", "xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=32MiB")},
		{"bzip2", fixture(t, "vmlinux.bz2", "bzip2", "-9")},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := EmbeddedConfig(context.Background(), kt.BzImage(c.payload))
			require.NoError(t, err)
			assert.Equal(t, kt.Config, string(got))
			assert.Equal(t, "y", ParseConfig(got)["SCHED_CLASS_EXT"])

			// The same compression without the config: none, and no
			// error from the stream's end (the size Linux appends).
			none := kt.Vmlinux(nil)
			var p []byte
			switch c.name {
			case "gzip":
				p = kt.Gzip(none)
			case "lz4 legacy":
				p = kt.LZ4(none)
			case "lzma":
				p = kt.LZMA(none)
			default:
				p = kt.Zstd(none)
			}
			_, err = EmbeddedConfig(context.Background(), kt.BzImage(p))
			assert.ErrorIs(t, err, ErrNoEmbeddedConfig)
		})
	}
}

// TestEmbeddedConfigFixtures checks that the committed fixtures are what
// synthVmlinux makes, so that the BCJ case tests what it says.
func TestEmbeddedConfigFixtures(t *testing.T) {
	for name, cmd := range map[string][]string{
		"vmlinux.xz":  {"xz", "-dc"},
		"vmlinux.bz2": {"bzip2", "-dc"},
	} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			t.Logf("%s: skipped, no %s command to unpack it", name, cmd[0])
			continue
		}
		c := exec.Command(cmd[0], cmd[1:]...)
		f, err := os.Open(filepath.Join("testdata", "ikconfig", name))
		require.NoError(t, err)
		c.Stdin = f
		out, err := c.Output()
		f.Close()
		require.NoError(t, err)
		assert.Equal(t, kt.Vmlinux([]byte(kt.Config)), out, name)
	}
	// The BCJ fixture really uses the filter: a decoder without it (as
	// ulikunitz/xz is) refuses it, where it reads the plain one.
	b, err := os.ReadFile(filepath.Join("testdata", "ikconfig", "vmlinux.xz"))
	require.NoError(t, err)
	_, err = xz.NewReader(bytes.NewReader(b))
	if err == nil {
		r, _ := xz.NewReader(bytes.NewReader(b))
		_, err = bytes.NewBuffer(nil).ReadFrom(r)
	}
	assert.Error(t, err, "the xz fixture has a filter besides LZMA2")
}

// TestEmbeddedConfigMarkerAcrossFills puts the start marker across the
// end of the scan buffer (1 MiB), at every split of its bytes.
func TestEmbeddedConfigMarkerAcrossFills(t *testing.T) {
	config := kt.Gzip([]byte(kt.Config))
	for split := 1; split < len(ikconfigStart); split++ {
		v := kt.Code(5, 1<<20-split)
		v = append(v, "IKCFG_ST"...)
		v = append(v, config...)
		v = append(v, "IKCFG_ED"...)
		got, err := EmbeddedConfig(context.Background(), kt.BzImage(kt.Zstd(v)))
		require.NoError(t, err, "split %d", split)
		assert.Equal(t, kt.Config, string(got))
	}
}

func TestEmbeddedConfigDamaged(t *testing.T) {
	v := kt.Vmlinux([]byte(kt.Config))
	good := kt.BzImage(kt.Gzip(v))
	_, err := EmbeddedConfig(context.Background(), good)
	require.NoError(t, err, "the positive control")

	at := bytes.Index(v, []byte("IKCFG_ST")) + len("IKCFG_ST")
	flipped := bytes.Clone(v)
	flipped[at+40] ^= 0xff // inside the config's deflate data
	noEnd := bytes.Clone(v)
	end := bytes.Index(noEnd, []byte("IKCFG_ED"))
	copy(noEnd[end:], "IKCFG_XX")
	cut := v[:at+50]

	oldProto := bytes.Clone(good)
	binary.LittleEndian.PutUint16(oldProto[0x206:], 0x206) // the boot protocol: 2.06
	pastEnd := bytes.Clone(good)
	binary.LittleEndian.PutUint32(pastEnd[0x24c:], 1<<30) // payload_length
	lzo := kt.BzImage(append([]byte{0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a}, make([]byte, 64)...))
	unknown := kt.BzImage(make([]byte, 64))
	bigConfig := kt.Gzip(append(append([]byte("IKCFG_ST"), kt.Gzip(make([]byte, maxConfig+1))...), "IKCFG_ED"...))

	withConfig := func(config []byte) []byte {
		return kt.BzImage(kt.Zstd(append(append([]byte("IKCFG_ST"), kt.Gzip(config)...), "IKCFG_ED"...)))
	}
	zstdFlipped := kt.Zstd(v)
	zstdFlipped[len(zstdFlipped)/3] ^= 0x55 // in the compressed blocks before the config
	lz4Huge := append([]byte(lz4LegacyMagic), 0xff, 0xff, 0xff, 0x7f)
	lz4Bad := append([]byte(lz4LegacyMagic), 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)
	// Two legacy frames of a kernel with no config, the second dropped:
	// the stream ends cleanly at a block's end, short of its trailer.
	noConfig := kt.Vmlinux(nil)
	lz4First := kt.LZ4(noConfig[:len(noConfig)/2])
	lz4Cut := lz4First[:len(lz4First)-4]

	for _, c := range []struct {
		name    string
		image   []byte
		damaged bool // wraps ErrDamagedImage
		want    string
	}{
		{"config's deflate data flipped", kt.BzImage(kt.Gzip(flipped)), true, "embedded config"},
		{"no end marker", kt.BzImage(kt.Gzip(noEnd)), true, "not followed by"},
		{"payload cut inside the config", kt.BzImage(kt.Zstd(cut)), true, "embedded config"},
		{"zstd blocks flipped", kt.BzImage(zstdFlipped), true, "zstd-compressed kernel"},
		{"lz4 block over the legacy bound", kt.BzImage(kt.WithSize(lz4Huge, 0)), true, "lz4 block of"},
		{"lz4 block that does not unpack", kt.BzImage(kt.WithSize(lz4Bad, 0)), true, "lz4"},
		{"lz4 cut at a block's end", kt.BzImage(kt.WithSize(lz4Cut, len(noConfig))), true, "its size trailer says"},
		{"an empty lz4 block", kt.BzImage(kt.WithSize(append([]byte(lz4LegacyMagic), 0, 0, 0, 0), 0)), true, "an empty lz4 block"},
		{"payload past the image", pastEnd, true, "outside"},
		{"payload of 4 bytes", kt.BzImage([]byte{0x28, 0xb5, 0x2f, 0xfd}), true, "too short"},
		{"no known compression", unknown, true, "no compression Linux builds with"},
		{"config over the bound", kt.BzImage(bigConfig), true, "larger than"},
		{"an empty config", withConfig(nil), true, "no CONFIG_ line"},
		{"a config of random bytes", withConfig(kt.Code(9, 4096)), true, "no CONFIG_ line"},
		{"boot protocol 2.06", oldProto, false, "older than 2.08"},
		{"LZO", lzo, false, "LZO-compressed"},
		{"not a bzImage", []byte("MZ not a kernel"), false, "not a bzImage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := EmbeddedConfig(context.Background(), c.image)
			require.Error(t, err)
			assert.NotErrorIs(t, err, ErrNoEmbeddedConfig)
			assert.Equal(t, c.damaged, errors.Is(err, ErrDamagedImage), "wraps ErrDamagedImage: %v", err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestEmbeddedConfigLZ4Frames: lz4 legacy frames follow one another, and
// a payload of nothing but frame magics (which overflowed the stack of
// pierrec/lz4's own frame reader) is read as no data, in bounded memory.
func TestEmbeddedConfigLZ4Frames(t *testing.T) {
	v := kt.Vmlinux([]byte(kt.Config))
	half := len(v) / 2
	first, second := kt.LZ4(v[:half]), kt.LZ4(v[half:])
	two := append(first[:len(first)-4], second...) // each frame without its size, as concatenated
	got, err := EmbeddedConfig(context.Background(), kt.BzImage(two))
	require.NoError(t, err)
	assert.Equal(t, kt.Config, string(got))

	image := kt.BzImage(kt.WithSize(bytes.Repeat([]byte(lz4LegacyMagic), 16<<20/len(lz4LegacyMagic)), 0))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = EmbeddedConfig(context.Background(), image)
	runtime.ReadMemStats(&after)
	assert.ErrorIs(t, err, ErrNoEmbeddedConfig)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "bytes allocated")
}

// TestEmbeddedConfigBounded drives EmbeddedConfig past its bounds: a
// payload that unpacks to more than maxVmlinux without a config stops
// there, and one that asks for a window over maxDictBytes is refused
// before it is allocated.
func TestEmbeddedConfigBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("unpacks 512 MiB")
	}
	var frame bytes.Buffer
	zw, err := zstd.NewWriter(&frame, zstd.WithEncoderLevel(zstd.SpeedFastest))
	require.NoError(t, err)
	zeros := make([]byte, 1<<20)
	for range maxVmlinux>>20 + 1 {
		_, err := zw.Write(zeros)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = EmbeddedConfig(context.Background(), kt.BzImage(kt.WithSize(frame.Bytes(), 0)))
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("more than %d MiB", maxVmlinux>>20))
	// The decoder's window (8 MiB here) and the scan buffer, not the
	// 513 MiB the payload unpacks to.
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "bytes allocated")

	// Exactly the bound, and no config: none, not "more than".
	frame.Reset()
	zw, err = zstd.NewWriter(&frame, zstd.WithEncoderLevel(zstd.SpeedFastest))
	require.NoError(t, err)
	for range maxVmlinux >> 20 {
		_, err := zw.Write(zeros)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	_, err = EmbeddedConfig(context.Background(), kt.BzImage(kt.WithSize(frame.Bytes(), maxVmlinux)))
	assert.ErrorIs(t, err, ErrNoEmbeddedConfig)
	// The same, its size trailer saying more: cut short, so damaged.
	_, err = EmbeddedConfig(context.Background(), kt.BzImage(kt.WithSize(frame.Bytes(), maxVmlinux-1)))
	assert.ErrorIs(t, err, ErrDamagedImage)
	assert.Contains(t, err.Error(), "its size trailer says")

	// A frame header asking for a 1 GiB window (RFC 8878 §3.1.1.1.2:
	// exponent 20 + 10 = 30).
	huge := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 20 << 3, 0, 0, 0, 0, 0, 0, 0, 0}
	_, err = EmbeddedConfig(context.Background(), kt.BzImage(huge))
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNoEmbeddedConfig)
	assert.True(t, strings.Contains(err.Error(), "window") || strings.Contains(err.Error(), "memory"), err.Error())
}

// TestEmbeddedConfigOfRealKernels reads the cached kernels: a sched_ext
// kernel that `make scx` built has CONFIG_IKCONFIG=y and carries the
// same config as its build tree; Debian's builds it as a module.
func TestEmbeddedConfigOfRealKernels(t *testing.T) {
	cache, err := os.UserCacheDir()
	require.NoError(t, err)
	builds, _ := filepath.Glob(filepath.Join(cache, "ktstr", "kernel-build", "sched-ext-*", "bzImage"))
	dir, err := CacheDir()
	require.NoError(t, err)
	debian, derr := Default(dir)
	if len(builds) == 0 && derr != nil {
		t.Skip("no cached kernel: run ktstr kernel fetch (Debian's) or make scx (sched_ext)")
	}
	for _, bz := range builds {
		image, err := os.ReadFile(bz)
		require.NoError(t, err)
		got, err := EmbeddedConfig(context.Background(), image)
		require.NoError(t, err, bz)
		want, err := ReadConfig(filepath.Join(filepath.Dir(bz), "obj", ".config"))
		require.NoError(t, err)
		assert.Equal(t, want, ParseConfig(got), bz)
		assert.Equal(t, "y", ParseConfig(got)["SCHED_CLASS_EXT"])
	}
	if derr == nil && debian.Config != "" {
		c, err := ReadConfig(debian.Config)
		require.NoError(t, err)
		image, err := os.ReadFile(debian.Path)
		require.NoError(t, err)
		_, err = EmbeddedConfig(context.Background(), image)
		if c["IKCONFIG"] == "y" {
			assert.NoError(t, err, debian.Path)
		} else {
			assert.ErrorIs(t, err, ErrNoEmbeddedConfig, debian.Path)
		}
	}
}

// TestOpenEmbeddedConfig: a bzImage with no config beside it brings the
// one built into it, so pre-flight judges a kernel given alone; a config
// file beside it (its build tree's) comes first; one with neither goes
// without pre-flight, saying why.
func TestOpenEmbeddedConfig(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		s, err := Open(t.Context(), write(t, []byte(kt.Config)), "", t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, EmbeddedConfigFrom, s.ConfigFrom)
		require.NotNil(t, s.Config())
		assert.NoError(t, s.Config().Preflight(Needs{SchedExt: true}, s.Modules, "kernel "+s.Release))
	})
	t.Run("alone, without the virtio console", func(t *testing.T) {
		noConsole := strings.Replace(kt.Config, "CONFIG_VIRTIO_CONSOLE=y", "# CONFIG_VIRTIO_CONSOLE is not set", 1)
		s, err := Open(t.Context(), write(t, []byte(noConsole)), "", t.TempDir())
		require.NoError(t, err)
		require.NotNil(t, s.Config())
		assert.ErrorContains(t, s.Config().Preflight(Needs{}, s.Modules, "kernel "+s.Release), "CONFIG_VIRTIO_CONSOLE is not set")
	})
	t.Run("in a package directory without boot/config", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "boot"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-6.99.0-ikconfig"), kt.BzImage(kt.Zstd(kt.Vmlinux([]byte(kt.Config)))), 0o644))
		s, err := Open(t.Context(), dir, "", t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, EmbeddedConfigFrom, s.ConfigFrom)
		assert.Equal(t, "y", s.Config()["SCHED_CLASS_EXT"])
	})
	tree := func(t *testing.T, image []byte, config string) string {
		root := t.TempDir()
		boot := filepath.Join(root, "arch", "x86", "boot")
		require.NoError(t, os.MkdirAll(boot, 0o755))
		p := filepath.Join(boot, "bzImage")
		require.NoError(t, os.WriteFile(p, image, 0o644))
		require.NoError(t, os.MkdirAll(filepath.Join(root, "include", "config"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, "include", "config", "kernel.release"), []byte(kt.Release+"\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(root, ".config"), []byte(config), 0o644))
		beforeBuild(t, filepath.Join(root, ".config"))
		return p
	}
	t.Run("the image's own config comes before its build tree's", func(t *testing.T) {
		// A .config edited since the build (make menuconfig leaves
		// kernel.release alone) says nothing about this image.
		p := tree(t, kt.BzImage(kt.Zstd(kt.Vmlinux([]byte(kt.Config)))), "CONFIG_VIRTIO=y\n")
		s, err := Open(t.Context(), p, "", t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, EmbeddedConfigFrom, s.ConfigFrom)
		assert.Equal(t, "y", s.Config()["SCHED_CLASS_EXT"])
	})
	t.Run("the build tree's .config where the image has none", func(t *testing.T) {
		p := tree(t, kt.BzImage(kt.Zstd(kt.Vmlinux(nil))), "CONFIG_VIRTIO=y\n")
		s, err := Open(t.Context(), p, "", t.TempDir())
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(p)))), ".config"), s.ConfigFrom)
		assert.NoError(t, s.ConfigErr)
		assert.Equal(t, "y", s.Config()["VIRTIO"])
	})
	t.Run("a damaged image is not saved by its build tree's .config", func(t *testing.T) {
		v := kt.Vmlinux([]byte(kt.Config))
		copy(v[bytes.Index(v, []byte("IKCFG_ED")):], "IKCFG_XX")
		p := tree(t, kt.BzImage(kt.Zstd(v)), kt.Config)
		s, err := Open(t.Context(), p, "", t.TempDir())
		require.NoError(t, err)
		assert.Nil(t, s.Config())
		assert.ErrorIs(t, s.ConfigErr, ErrDamagedImage)
	})
	t.Run("none", func(t *testing.T) {
		s, err := Open(t.Context(), write(t, nil), "", t.TempDir())
		require.NoError(t, err)
		assert.Nil(t, s.Config())
		assert.Empty(t, s.ConfigFrom)
		assert.ErrorIs(t, s.ConfigErr, ErrNoEmbeddedConfig)
	})
	t.Run("a damaged embedded config", func(t *testing.T) {
		v := kt.Vmlinux([]byte(kt.Config))
		copy(v[bytes.Index(v, []byte("IKCFG_ED")):], "IKCFG_XX")
		p := filepath.Join(t.TempDir(), "bzImage")
		require.NoError(t, os.WriteFile(p, kt.BzImage(kt.Zstd(v)), 0o644))
		s, err := Open(t.Context(), p, "", t.TempDir())
		require.NoError(t, err, "a kernel whose config cannot be read is not refused here")
		assert.Nil(t, s.Config())
		assert.ErrorIs(t, s.ConfigErr, ErrDamagedImage)
	})
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Open(ctx, write(t, []byte(kt.Config)), "", t.TempDir())
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// TestEmbeddedConfigOracle is the positive control of the fuzz target:
// its oracle catches an error on two lines and a config over the bound,
// and passes what EmbeddedConfig returns for a good image.
func TestEmbeddedConfigOracle(t *testing.T) {
	assert.Error(t, checkEmbeddedConfig(nil, errors.New("two\nlines")))
	assert.Error(t, checkEmbeddedConfig(make([]byte, maxConfig+1), nil))
	assert.NoError(t, checkEmbeddedConfig(EmbeddedConfig(context.Background(), kt.BzImage(kt.Zstd(kt.Vmlinux([]byte(kt.Config)))))))
	assert.NoError(t, checkEmbeddedConfig(nil, ErrNoEmbeddedConfig))
}

// TestEmbeddedConfigCached: Open keeps what it read from an image under
// the cache by its SHA-256, and the next Open of the same image takes it
// from there without unpacking. The control: a planted answer is the one
// returned.
func TestEmbeddedConfigCached(t *testing.T) {
	cache := t.TempDir()
	with, without := write(t, []byte(kt.Config)), write(t, nil)
	for _, p := range []string{with, without} {
		s, err := Open(t.Context(), p, "", cache)
		require.NoError(t, err)
		sum := filepath.Join(cache, "ikconfig", s.SHA256)
		if p == with {
			assert.FileExists(t, sum+".config")
			b, err := os.ReadFile(sum + ".config")
			require.NoError(t, err)
			assert.Equal(t, kt.Config, string(b))
		} else {
			assert.FileExists(t, sum+".none")
		}
	}
	// Swap the answers: the cache, not the image, decides now.
	sWith, err := Open(t.Context(), with, "", cache)
	require.NoError(t, err)
	sWithout, err := Open(t.Context(), without, "", cache)
	require.NoError(t, err)
	dir := filepath.Join(cache, "ikconfig")
	require.NoError(t, os.Remove(filepath.Join(dir, sWith.SHA256+".config")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, sWith.SHA256+".none"), nil, 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, sWithout.SHA256+".none")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, sWithout.SHA256+".config"), []byte("CONFIG_PLANTED=y\n"), 0o644))

	s, err := Open(t.Context(), with, "", cache)
	require.NoError(t, err)
	assert.ErrorIs(t, s.ConfigErr, ErrNoEmbeddedConfig)
	s, err = Open(t.Context(), without, "", cache)
	require.NoError(t, err)
	assert.Equal(t, "y", s.Config()["PLANTED"])

	// What is not a kept answer is read again from the image and kept
	// anew: an empty file, one with no option, a FIFO (which would
	// block an open), a directory.
	sum := filepath.Join(dir, sWith.SHA256)
	for name, plant := range map[string]func() error{
		"empty":     func() error { return os.WriteFile(sum+".config", nil, 0o644) },
		"no option": func() error { return os.WriteFile(sum+".config", []byte("# nothing\n\x00\xff"), 0o644) },
		"FIFO":      func() error { return unix.Mkfifo(sum+".config", 0o644) },
		"directory": func() error { return os.Mkdir(sum+".config", 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.RemoveAll(sum+".none"))
			require.NoError(t, os.RemoveAll(sum+".config"))
			require.NoError(t, plant())
			done := make(chan *Source, 1)
			go func() {
				s, err := Open(t.Context(), with, "", cache)
				assert.NoError(t, err)
				done <- s
			}()
			select {
			case s := <-done:
				require.NotNil(t, s)
				assert.Equal(t, EmbeddedConfigFrom, s.ConfigFrom)
				assert.Equal(t, "y", s.Config()["SCHED_CLASS_EXT"])
			case <-time.After(10 * time.Second):
				t.Fatal("Open blocked on the planted answer")
			}
		})
	}

	// Without a cache it unpacks every time.
	s, err = Open(t.Context(), with, "", "")
	require.NoError(t, err)
	assert.Equal(t, EmbeddedConfigFrom, s.ConfigFrom)
}

// write writes a stand-in bzImage whose built-in config is config (none
// if nil) and returns its path.
func write(t *testing.T, config []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bzImage")
	require.NoError(t, os.WriteFile(p, kt.BzImage(kt.Zstd(kt.Vmlinux(config))), 0o644))
	return p
}
