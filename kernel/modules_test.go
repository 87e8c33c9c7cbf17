package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

const testRelease = "6.1.0-99-test-amd64"

// fakeModule builds a minimal ELF64 relocatable object for machine with
// a .modinfo section holding info (NUL-separated key=value pairs), as a
// kernel module carries.
func fakeModule(machine elf.Machine, info ...string) []byte {
	var modinfo []byte
	for _, kv := range info {
		modinfo = append(append(modinfo, kv...), 0)
	}
	shstr := []byte("\x00.shstrtab\x00.modinfo\x00")
	le := binary.LittleEndian
	var b bytes.Buffer
	hdr := make([]byte, 64)
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(hdr[16:], uint16(elf.ET_REL))
	le.PutUint16(hdr[18:], uint16(machine))
	le.PutUint32(hdr[20:], 1)
	shoff := 64 + len(shstr) + len(modinfo)
	le.PutUint64(hdr[40:], uint64(shoff))
	le.PutUint16(hdr[52:], 64) // ehsize
	le.PutUint16(hdr[58:], 64) // shentsize
	le.PutUint16(hdr[60:], 3)  // shnum
	le.PutUint16(hdr[62:], 1)  // shstrndx
	b.Write(hdr)
	b.Write(shstr)
	b.Write(modinfo)
	sh := func(name, typ uint32, off, size int) {
		s := make([]byte, 64)
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
		b.Write(s)
	}
	sh(0, 0, 0, 0)
	sh(1, uint32(elf.SHT_STRTAB), 64, len(shstr))
	sh(11, uint32(elf.SHT_PROGBITS), 64+len(shstr), len(modinfo))
	return b.Bytes()
}

func testModule(name, depends string) []byte {
	return fakeModule(elf.EM_X86_64, "license=GPL", "depends="+depends, "name="+name, "vermagic="+testRelease+" SMP mod_unload modversions ")
}

func compress(t *testing.T, ext string, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch ext {
	case ".ko":
		return b
	case ".ko.xz":
		w, err := xz.NewWriter(&out)
		require.NoError(t, err)
		_, err = w.Write(b)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case ".ko.zst":
		w, err := zstd.NewWriter(&out)
		require.NoError(t, err)
		_, err = w.Write(b)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case ".ko.gz":
		w := gzip.NewWriter(&out)
		_, err := w.Write(b)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
	return out.Bytes()
}

// moduleTree writes lib/modules/RELEASE with the guest modules (virtio
// and virtio_ring built in when builtin) compressed with ext.
func moduleTree(t *testing.T, root, ext string, builtin bool) string {
	t.Helper()
	dir := filepath.Join(root, "lib", "modules", testRelease)
	drv := filepath.Join(dir, "kernel", "drivers")
	require.NoError(t, os.MkdirAll(filepath.Join(drv, "virtio"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(drv, "char"), 0o755))
	mods := map[string]string{
		"virtio/virtio_pci_legacy_dev": "", "virtio/virtio_pci_modern_dev": "",
		"virtio/virtio_pci":   "virtio,virtio_ring,virtio_pci_legacy_dev,virtio_pci_modern_dev",
		"char/virtio_console": "virtio,virtio_ring",
	}
	if !builtin {
		mods["virtio/virtio_ring"] = ""
		mods["virtio/virtio"] = "virtio_ring"
	} else {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.builtin"),
			[]byte("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n"), 0o644))
	}
	for p, deps := range mods {
		name := filepath.Base(p)
		require.NoError(t, os.WriteFile(filepath.Join(drv, p+ext), compress(t, ext, testModule(name, deps)), 0o644))
	}
	return dir
}

func names(mods []Module) []string {
	var n []string
	for _, m := range mods {
		n = append(n, m.Name)
	}
	return n
}

func always(string) bool { return true }

// TestResolveOrdersByDependency: every compression Debian ships; the
// result loads dependencies first; built-in modules are left out.
func TestResolveOrdersByDependency(t *testing.T) {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		t.Run(ext, func(t *testing.T) {
			m, err := OpenModules(moduleTree(t, t.TempDir(), ext, false), testRelease)
			require.NoError(t, err)
			mods, err := m.Resolve(GuestModules(), always)
			require.NoError(t, err)
			got := names(mods)
			require.Len(t, got, 6)
			pos := map[string]int{}
			for i, n := range got {
				pos[n] = i
			}
			for _, mod := range mods {
				for _, d := range mod.Depends {
					assert.Less(t, pos[d], pos[mod.Name], "%s loads before %s, which needs it", d, mod.Name)
				}
				_, err := modinfo(mod.Data)
				assert.NoError(t, err, "%s is decompressed", mod.Name)
			}
		})
	}
	t.Run("built in", func(t *testing.T) {
		m, err := OpenModules(moduleTree(t, t.TempDir(), ".ko", true), testRelease)
		require.NoError(t, err)
		assert.True(t, m.Builtin("virtio"))
		mods, err := m.Resolve(GuestModules(), always)
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_console"}, names(mods))
	})
}

// TestResolveRefusesBadModules: missing, corrupt, another release,
// another architecture, a dependency loop; each names the file.
func TestResolveRefusesBadModules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(dir string)
		want   string
	}{
		{"control: intact", func(string) {}, ""},
		{"missing dependency", func(d string) { os.Remove(filepath.Join(d, "kernel/drivers/virtio/virtio_ring.ko")) }, "needs virtio_ring"},
		{"corrupt", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"), []byte("not elf"), 0o644)
		}, "not an ELF object"},
		{"corrupt xz", func(d string) {
			os.Remove(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"))
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko.xz"), []byte("\xfd7zXZ\x00garbage"), 0o644)
		}, "virtio_console.ko.xz"},
		{"another release", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"),
				fakeModule(elf.EM_X86_64, "depends=", "name=virtio_console", "vermagic=6.12.1 SMP"), 0o644)
		}, "built for 6.12.1"},
		{"name that is a path", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"),
				fakeModule(elf.EM_X86_64, "depends=", "name=../../../init", "vermagic="+testRelease), 0o644)
		}, "which is no module name"},
		{"name with an escape", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"),
				fakeModule(elf.EM_X86_64, "depends=", "name=virtio\x1b[2J", "vermagic="+testRelease), 0o644)
		}, "which is no module name"},
		{"vermagic of blanks", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"),
				fakeModule(elf.EM_X86_64, "depends=", "name=virtio_console", "vermagic= \t "), 0o644)
		}, "has no vermagic"},
		{"no vermagic", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"),
				fakeModule(elf.EM_X86_64, "depends=", "name=virtio_console"), 0o644)
		}, "has no vermagic"},
		{"another architecture", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/char/virtio_console.ko"),
				fakeModule(elf.EM_AARCH64, "depends=", "name=virtio_console", "vermagic="+testRelease), 0o644)
		}, "not an x86-64 kernel module"},
		{"loop", func(d string) {
			os.WriteFile(filepath.Join(d, "kernel/drivers/virtio/virtio_ring.ko"), testModule("virtio_ring", "virtio"), 0o644)
		}, "depends on itself"},
		{"required module absent", func(d string) { os.Remove(filepath.Join(d, "kernel/drivers/char/virtio_console.ko")) }, "holds no virtio_console"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := moduleTree(t, t.TempDir(), ".ko", false)
			tc.break_(dir)
			m, err := OpenModules(dir, testRelease)
			require.NoError(t, err)
			_, err = m.Resolve(GuestModules(), always)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadModules)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := OpenModules(filepath.Join(t.TempDir(), "absent"), testRelease)
	assert.ErrorIs(t, err, ErrBadModules)
}

// writeAr writes an ar archive of members, as a .deb is laid out.
func writeAr(t *testing.T, path string, members ...[2]any) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, m := range members {
		name, data := m[0].(string), m[1].([]byte)
		hdr := []byte(
			padRight(name+"/", 16) + padRight("0", 12) + padRight("0", 6) + padRight("0", 6) +
				padRight("100644", 8) + padRight(strconv.Itoa(len(data)), 10) + "`\n")
		require.Len(t, hdr, arHeaderLen)
		b.Write(hdr)
		b.Write(data)
		if len(data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

func padRight(s string, n int) string {
	for len(s) < n {
		s += " "
	}
	return s
}

// TestOpenDebAndDir: a kernel package (data.tar in each compression) and
// the directory it unpacks to resolve to the same kernel, config and
// modules; the module tree comes along.
func TestOpenDebAndDir(t *testing.T) {
	img := fakeBzImage(testRelease + " #1")
	config := []byte("CONFIG_VIRTIO=m\nCONFIG_VIRTIO_PCI=m\nCONFIG_VIRTIO_CONSOLE=m\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\n")
	files := map[string][]byte{
		"./boot/vmlinuz-" + testRelease: img,
		"./boot/config-" + testRelease:  config,
		"./usr/share/doc/x/changelog":   []byte("ignored"),
		"./../../etc/evil":              []byte("must not escape"),
	}
	tree := moduleTree(t, t.TempDir(), ".ko.xz", false)
	filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(filepath.Dir(filepath.Dir(filepath.Dir(tree))), p)
			b, _ := os.ReadFile(p)
			files["./"+filepath.ToSlash(rel)] = b
		}
		return nil
	})
	data := tarOf(t, files)
	for _, comp := range []string{".xz", ".zst", ".gz", ""} {
		t.Run("data.tar"+comp, func(t *testing.T) {
			root := t.TempDir()
			deb := filepath.Join(root, "linux-image-test.deb")
			body := data
			if comp != "" {
				body = compress(t, map[string]string{".xz": ".ko.xz", ".zst": ".ko.zst", ".gz": ".ko.gz"}[comp], data)
			}
			writeAr(t, deb, [2]any{"debian-binary", []byte("2.0\n")}, [2]any{"control.tar.xz", []byte("x")}, [2]any{"data.tar" + comp, body})
			require.True(t, IsDeb(deb))
			s, err := Open(t.Context(), deb, "", filepath.Join(root, "cache"))
			require.NoError(t, err)
			assert.Equal(t, testRelease, s.Release)
			require.NotNil(t, s.Config())
			assert.Equal(t, "m", s.Config()["VIRTIO_CONSOLE"])
			require.NotNil(t, s.Modules)
			mods, err := s.Needed()
			require.NoError(t, err)
			assert.Len(t, mods, 6)
			assert.NoError(t, s.Config().Preflight(Needs{}, s.Modules, "test"))
			assert.NoFileExists(t, filepath.Join(root, "etc", "evil"))
			// Opened again, it comes from the unpacked cache.
			again, err := Open(t.Context(), deb, "", filepath.Join(root, "cache"))
			require.NoError(t, err)
			assert.Equal(t, s.Path, again.Path)
		})
	}
	t.Run("not a kernel", func(t *testing.T) {
		root := t.TempDir()
		deb := filepath.Join(root, "other.deb")
		writeAr(t, deb, [2]any{"debian-binary", []byte("2.0\n")}, [2]any{"data.tar", tarOf(t, map[string][]byte{"./usr/bin/x": []byte("x")})})
		_, err := Open(t.Context(), deb, "", root)
		assert.ErrorIs(t, err, ErrNotDeb)
		empty := filepath.Join(root, "empty-dir")
		require.NoError(t, os.Mkdir(empty, 0o755))
		_, err = Open(t.Context(), empty, "", root)
		assert.ErrorIs(t, err, ErrNotKernel)
		text := filepath.Join(root, "notes.txt")
		require.NoError(t, os.WriteFile(text, []byte("hello"), 0o644))
		_, err = Open(t.Context(), text, "", root)
		assert.ErrorIs(t, err, ErrNotKernel)
		_, err = Open(t.Context(), filepath.Join(root, "absent"), "", root)
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("bzImage with --modules", func(t *testing.T) {
		root := t.TempDir()
		bz := filepath.Join(root, "bzImage")
		require.NoError(t, os.WriteFile(bz, img, 0o644))
		s, err := Open(t.Context(), bz, "", root)
		require.NoError(t, err)
		assert.Nil(t, s.Modules, "a bare bzImage brings no modules")
		s, err = Open(t.Context(), bz, filepath.Dir(filepath.Dir(filepath.Dir(tree))), root)
		require.NoError(t, err)
		require.NotNil(t, s.Modules)
		mods, err := s.Needed()
		require.NoError(t, err)
		assert.Len(t, mods, 6, "config unknown: every guest module the tree holds")
	})
}

// TestPreflight: each unmet need is named with its fix; a kernel that
// meets them all passes (the control).
func TestPreflight(t *testing.T) {
	all := "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\n"
	mods, err := OpenModules(moduleTree(t, t.TempDir(), ".ko", false), testRelease)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		config string
		needs  Needs
		mods   *Modules
		want   string
	}{
		{"control: all built in", all, Needs{}, nil, ""},
		{"modules given", "CONFIG_VIRTIO=m\nCONFIG_VIRTIO_PCI=m\nCONFIG_VIRTIO_CONSOLE=m\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\n", Needs{}, mods, ""},
		{"modules missing", "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=m\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\n", Needs{}, nil, "--modules DIR"},
		{"no console", "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\n# CONFIG_VIRTIO_CONSOLE is not set\nCONFIG_DEVTMPFS=y\nCONFIG_CGROUPS=y\n", Needs{}, nil, "CONFIG_VIRTIO_CONSOLE is not set"},
		{"no devtmpfs", "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_CGROUPS=y\n", Needs{}, nil, "CONFIG_DEVTMPFS"},
		{"no sched_ext", all, Needs{SchedExt: true}, nil, "make scx"},
		{"sched_ext", all + "CONFIG_SCHED_CLASS_EXT=y\n", Needs{SchedExt: true}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ParseConfig([]byte(tc.config)).Preflight(tc.needs, tc.mods, "kernel x")
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
	c := ParseConfig([]byte("CONFIG_VIRTIO_CONSOLE=m\nCONFIG_PREEMPT_RT=y\n"))
	facts := map[string]string{}
	for _, f := range c.Facts() {
		facts[f.Name] = f.State
	}
	assert.Equal(t, "module", facts["virtio console"])
	assert.Equal(t, "missing", facts["virtio pci"])
	assert.Equal(t, "yes", facts["PREEMPT_RT"])
}

// TestOpenDirRefusesNonFileImages: a directory whose boot/vmlinuz-* is a
// device (here a symlink to /dev/zero) is refused, not read without end.
func TestOpenDirRefusesNonFileImages(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "boot"), 0o755))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "boot", "vmlinuz-6.1.0-x")))
	_, err := Open(t.Context(), dir, "", t.TempDir())
	require.ErrorIs(t, err, ErrNotKernel)
	assert.Contains(t, err.Error(), "not a regular file")
}

// xzWithDict returns b xz-compressed (a 1 MiB dictionary, as Linux
// packs modules) with its block header rewritten to claim the LZMA2
// dictionary size code dict (40: 4 GiB - 1, the largest there is).
func xzWithDict(t *testing.T, b []byte, dict byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 1 << 20}.NewWriter(&out)
	require.NoError(t, err)
	_, err = w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	x := out.Bytes()
	const stream = 12 // the stream header
	size := (int(x[stream]) + 1) * 4
	hdr := x[stream : stream+size]
	i := bytes.Index(hdr, []byte{0x21, 0x01}) // the LZMA2 filter: id, props size
	require.Positive(t, i)
	hdr[i+2] = dict
	binary.LittleEndian.PutUint32(hdr[size-4:], crc32.ChecksumIEEE(hdr[:size-4]))
	return x
}

// TestXZDictionaryBounded: a .ko.xz and a data.tar.xz whose header asks
// for a 4 GiB dictionary are refused with little allocated (ulikunitz/xz
// took 1 GiB for a 224-byte module asking for 1 GiB); the same files with
// Linux's 1 MiB dictionary (the control) read.
func TestXZDictionaryBounded(t *testing.T) {
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	mod := testModule("virtio", "")
	for _, tc := range []struct {
		name string
		dict byte
		want string
	}{
		{"control: 1 MiB", 16, ""},
		{"64 MiB, as xz -9", 28, ""},
		{"4 GiB", 40, "dictionary over 64 MiB"},
	} {
		t.Run("module "+tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "virtio.ko.xz")
			require.NoError(t, os.WriteFile(p, xzWithDict(t, mod, tc.dict), 0o644))
			var err error
			n := allocated(func() { _, err = ReadModule(p) })
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadModules)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, n, uint64(16<<20), "bytes allocated refusing it")
		})
	}
	img := fakeBzImage(testRelease + " #1")
	data := tarOf(t, map[string][]byte{"./boot/vmlinuz-" + testRelease: img})
	for _, tc := range []struct {
		name string
		dict byte
		want string
	}{
		{"control: 1 MiB", 16, ""},
		{"4 GiB", 40, "dictionary over 128 MiB"},
	} {
		t.Run("data.tar.xz "+tc.name, func(t *testing.T) {
			deb := filepath.Join(t.TempDir(), "k.deb")
			writeAr(t, deb, [2]any{"debian-binary", []byte("2.0\n")}, [2]any{"data.tar.xz", xzWithDict(t, data, tc.dict)})
			var err error
			n := allocated(func() { err = UnpackDeb(deb, filepath.Join(t.TempDir(), "out")) })
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrNotDeb)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, n, uint64(16<<20), "bytes allocated refusing it")
		})
	}
}

// chainTree writes n modules m0..m(n-1) into dir, each depending on the
// next, each padded to pad bytes (zstd makes that a few bytes on disk),
// and virtio_console depending on m0.
func chainTree(t *testing.T, n, pad int) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		dep := ""
		if i+1 < n {
			dep = "m" + strconv.Itoa(i+1)
		}
		name := "m" + strconv.Itoa(i)
		mod := fakeModule(elf.EM_X86_64, "depends="+dep, "name="+name, "vermagic="+testRelease+" SMP")
		mod = append(mod, make([]byte, max(0, pad-len(mod)))...)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".ko.zst"), compress(t, ".ko.zst", mod), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "virtio_console.ko"), testModule("virtio_console", "m0"), 0o644))
	return dir
}

// TestResolveBounded: what Resolve gathers has a budget in count and in
// bytes: a dependency chain one past maxResolvedModules, and modules
// that decompress past maxResolvedBytes in all (each under the per-module
// bound; before, 21 of 60 MiB were all held: 1200 MiB), are refused; a
// chain at the count budget, and modules just under the byte budget (the
// controls) resolve.
func TestResolveBounded(t *testing.T) {
	const pad = 40 << 20
	for _, tc := range []struct {
		name   string
		n, pad int
		want   string
	}{
		{"control: count at the budget", maxResolvedModules - 1, 0, ""},
		{"count past the budget", maxResolvedModules, 0, "more than 64 modules"},
		{"control: bytes under the budget", 3, pad, ""},
		{"bytes past the budget", 4, pad, "more than 128 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := OpenModules(chainTree(t, tc.n, tc.pad), testRelease)
			require.NoError(t, err)
			mods, err := m.Resolve([]string{"virtio_console"}, always)
			if tc.want == "" {
				require.NoError(t, err)
				assert.Len(t, mods, tc.n+1)
				return
			}
			require.ErrorIs(t, err, ErrBadModules)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
