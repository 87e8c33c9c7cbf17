package kernel

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnpackDebBounded: a package of many empty module files (50,000
// cost 150 KB as data.tar.zst and wrote 50,000 files before) and one
// whose data.tar decompresses past its bound in a member that is skipped
// are refused once past the budget, leaving fewer files than it; the
// same packages within the budget (the controls) unpack.
func TestUnpackDebBounded(t *testing.T) {
	img := fakeBzImage(testRelease + " #1")
	many := map[string][]byte{"./boot/vmlinuz-" + testRelease: img}
	for i := 0; i < 100; i++ {
		many[fmt.Sprintf("./lib/modules/%s/m%03d.ko", testRelease, i)] = nil
	}
	big := map[string][]byte{
		"./boot/vmlinuz-" + testRelease: img,
		"./usr/share/doc/big":           make([]byte, 8<<20),
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		lim   debLimits
		want  string
	}{
		{"control: 101 files, budget 101", many, debLimits{files: 101, tarSize: 1 << 30}, ""},
		{"101 files, budget 100", many, debLimits{files: 100, tarSize: 1 << 30}, "more than 100 kernel files"},
		{"control: 8 MiB skipped, budget 16 MiB", big, debLimits{files: 10, tarSize: 16 << 20}, ""},
		{"8 MiB skipped, budget 4 MiB", big, debLimits{files: 10, tarSize: 4 << 20}, "more than 4 MiB"},
		{"control: the defaults", big, defaultDebLimits(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			deb := filepath.Join(root, "k.deb")
			writeAr(t, deb, [2]any{"debian-binary", []byte("2.0\n")}, [2]any{"data.tar.zst", compress(t, ".ko.zst", tarOf(t, tc.files))})
			dst := filepath.Join(root, "out")
			err := unpackDeb(deb, dst, tc.lim)
			if tc.want == "" {
				require.NoError(t, err)
				assert.FileExists(t, filepath.Join(dst, "boot", "vmlinuz-"+testRelease))
				return
			}
			require.ErrorIs(t, err, ErrNotDeb)
			assert.Contains(t, err.Error(), tc.want)
			written := 0
			filepath.WalkDir(dst, func(_ string, d os.DirEntry, _ error) error {
				if d != nil && d.Type().IsRegular() {
					written++
				}
				return nil
			})
			assert.LessOrEqual(t, written, tc.lim.files)
		})
	}
	assert.Equal(t, debLimits{files: 32768, tarSize: 4 << 30}, defaultDebLimits(), "the budgets UnpackDeb uses")
}

// TestOpenModulesBounded: a tree of more entries than the budget is
// refused; at the budget (the control) it opens. Links in the tree (a
// loop, one to /dev/zero named like a module, one to a directory) are
// not followed; a --modules that is itself a link to a tree is.
func TestOpenModulesBounded(t *testing.T) {
	dir := moduleTree(t, t.TempDir(), ".ko", false)
	require.NoError(t, os.Symlink(".", filepath.Join(dir, "loop")))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "zero.ko")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(dir, "etc")))
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(string, os.DirEntry, error) error { n++; return nil }))
	n-- // the root is not an entry of it

	m, err := openModules(dir, testRelease, n)
	require.NoError(t, err)
	assert.True(t, m.Has("virtio_console"))
	assert.False(t, m.Has("zero"), "a link is no module")
	mods, err := m.Resolve(GuestModules(), always)
	require.NoError(t, err)
	assert.Len(t, mods, 6)

	_, err = openModules(dir, testRelease, n-1)
	require.ErrorIs(t, err, ErrBadModules)
	assert.Contains(t, err.Error(), fmt.Sprintf("more than %d files", n-1))

	// Of two files for a module, the first in lexical walk order is
	// taken, as filepath.WalkDir found it: kernel/ before updates/.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "updates"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "updates", "virtio_console.ko"), testModule("virtio_console", ""), 0o644))
	m, err = OpenModules(dir, testRelease)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "kernel", "drivers", "char", "virtio_console.ko"), m.files["virtio_console"])

	link := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.Symlink(dir, link))
	m, err = OpenModules(link, testRelease)
	require.NoError(t, err)
	assert.True(t, m.Has("virtio_console"), "the tree behind a --modules link")
}

// TestOpenDebChangedWhileRead: a package replaced after it was hashed
// (the hash names its unpacked copy in the cache) is refused rather than
// kept under the first file's hash; read with the hash of what it holds
// (the control), it unpacks. A package growing past the bound is not
// hashed without end.
func TestOpenDebChangedWhileRead(t *testing.T) {
	root := t.TempDir()
	deb := filepath.Join(root, "k.deb")
	pkg := func(release string) {
		data := tarOf(t, map[string][]byte{"./boot/vmlinuz-" + release: fakeBzImage(release + " #1")})
		writeAr(t, deb, [2]any{"debian-binary", []byte("2.0\n")}, [2]any{"data.tar", data})
	}
	pkg("6.1.0-1-a")
	first, err := fileSum(deb, maxPackage)
	require.NoError(t, err)
	pkg("6.1.0-2-b")
	second, err := fileSum(deb, maxPackage)
	require.NoError(t, err)

	err = unpackSummed(deb, filepath.Join(root, "a"), first)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "changed while it was read")
	require.NoError(t, unpackSummed(deb, filepath.Join(root, "b"), second))
	assert.FileExists(t, filepath.Join(root, "b", "boot", "vmlinuz-6.1.0-2-b"))

	st, err := os.Stat(deb)
	require.NoError(t, err)
	_, err = fileSum(deb, st.Size()-1)
	assert.ErrorContains(t, err, "over the")
}

// padTo returns b padded with newlines to n bytes: still a valid
// kernel.json (JSON allows trailing white space) or modules.builtin
// (blank lines are skipped), so only the size can refuse it.
func padTo(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	require.LessOrEqual(t, len(b), n)
	return append(b, bytes.Repeat([]byte{'\n'}, n-len(b))...)
}

// TestCacheRecordsAndBuiltinListBounded drives the size bounds of what
// the cache and a module tree hold past them: a kernel.json over maxMeta
// is skipped by List, a build.json over it is refused by readManifest
// as over the bound, and a modules.builtin over maxBuiltinList makes
// OpenModules refuse the tree. The controls are the same files at
// exactly their bound: listed, not refused for their size, opened.
func TestCacheRecordsAndBuiltinListBounded(t *testing.T) {
	t.Run("kernel.json", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			size   int
			listed bool
		}{
			{"control: at the bound", maxMeta, true},
			{"one byte past the bound", maxMeta + 1, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				k, err := Install(dir, fakeBzImage("6.12.3-big #1"), nil, Kernel{})
				require.NoError(t, err)
				meta := filepath.Join(filepath.Dir(k.Path), "kernel.json")
				b, err := os.ReadFile(meta)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(meta, padTo(t, b, tc.size), 0o644))
				ks, err := List(dir)
				require.NoError(t, err)
				if tc.listed {
					require.Len(t, ks, 1)
					assert.Equal(t, k.Release, ks[0].Release)
				} else {
					assert.Empty(t, ks, "a kernel.json over %d bytes is not read", maxMeta)
				}
			})
		}
	})
	t.Run("build.json", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			size int
			over bool
		}{
			{"control: at the bound", maxMeta, false},
			{"one byte past the bound", maxMeta + 1, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				require.NoError(t, os.WriteFile(filepath.Join(dir, manifestName), padTo(t, []byte(`{}`), tc.size), 0o644))
				_, err := readManifest(dir)
				if tc.over {
					require.ErrorIs(t, err, errOverBound)
				} else if err != nil {
					assert.NotErrorIs(t, err, errOverBound, "a build.json at the bound is not refused for its size")
				}
			})
		}
	})
	t.Run("modules.builtin", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			size int
			ok   bool
		}{
			{"control: at the bound", maxBuiltinList, true},
			{"one byte past the bound", maxBuiltinList + 1, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := moduleTree(t, t.TempDir(), ".ko", true)
				list := filepath.Join(dir, "modules.builtin")
				b, err := os.ReadFile(list)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(list, padTo(t, b, tc.size), 0o644))
				m, err := OpenModules(dir, testRelease)
				if tc.ok {
					require.NoError(t, err)
					assert.True(t, m.Builtin("virtio"))
					return
				}
				require.ErrorIs(t, err, ErrBadModules)
				require.ErrorIs(t, err, errOverBound)
				assert.Contains(t, err.Error(), "modules.builtin")
				assert.NotContains(t, err.Error(), "\n", "one line")
			})
		}
	})
}
