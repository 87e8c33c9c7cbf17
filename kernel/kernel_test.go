package kernel

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeBzImage returns a minimal image carrying an x86 boot header whose
// version string is version.
func fakeBzImage(version string) []byte {
	b := make([]byte, 0x1000)
	binary.LittleEndian.PutUint16(b[offBootFlag:], 0xaa55)
	copy(b[offHeaderMagic:], "HdrS")
	const at = 0x800
	binary.LittleEndian.PutUint16(b[offKernelVersion:], at-setupBase)
	copy(b[at:], version+"\x00")
	return b
}

func TestRelease(t *testing.T) {
	rel, err := Release(fakeBzImage("6.12.117+deb12-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"))
	require.NoError(t, err)
	assert.Equal(t, "6.12.117+deb12-cloud-amd64", rel)

	noMagic := fakeBzImage("6.1")
	copy(noMagic[offHeaderMagic:], "XXXX")
	badPtr := fakeBzImage("6.1")
	binary.LittleEndian.PutUint16(badPtr[offKernelVersion:], 0xffff)
	zeroPtr := fakeBzImage("6.1")
	binary.LittleEndian.PutUint16(zeroPtr[offKernelVersion:], 0)
	for name, img := range map[string][]byte{
		"short":        []byte("MZ"),
		"no HdrS":      noMagic,
		"pointer past": badPtr,
		"no pointer":   zeroPtr,
		"empty string": fakeBzImage(""),
	} {
		_, err := Release(img)
		assert.Error(t, err, name)
	}
}

func TestReleaseOfRealKernel(t *testing.T) {
	dir, err := CacheDir()
	require.NoError(t, err)
	k, err := Default(dir)
	if err != nil {
		t.Skipf("no cached kernel (%v)", err)
	}
	got, err := Inspect(k.Path)
	require.NoError(t, err)
	assert.Equal(t, k.Release, got.Release)
	assert.Equal(t, k.SHA256, got.SHA256)
}

func TestInstallListDefault(t *testing.T) {
	dir := t.TempDir()
	_, err := Default(dir)
	require.ErrorIs(t, err, ErrNoKernel)
	assert.Contains(t, err.Error(), "ktstr kernel fetch")

	for _, v := range []string{"6.12.9-a", "6.12.117-a", "6.12.10-a"} {
		k, err := Install(dir, fakeBzImage(v+" #1"), []byte("CONFIG_X=y\n"), Kernel{Origin: "test"})
		require.NoError(t, err)
		assert.Equal(t, v, k.Release)
		assert.FileExists(t, k.Path)
		assert.FileExists(t, k.Config)
		assert.Len(t, k.SHA256, 64)
	}
	// A stray directory without kernel.json is ignored.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "junk"), 0o755))

	ks, err := List(dir)
	require.NoError(t, err)
	var rels []string
	for _, k := range ks {
		rels = append(rels, k.Release)
	}
	assert.Equal(t, []string{"6.12.117-a", "6.12.10-a", "6.12.9-a"}, rels)

	k, err := Default(dir)
	require.NoError(t, err)
	assert.Equal(t, "6.12.117-a", k.Release)
	got, err := Inspect(k.Path)
	require.NoError(t, err)
	assert.Equal(t, k.SHA256, got.SHA256, "recorded sha256 is the image's")

	_, err = Install(dir, fakeBzImage("..rc1 #1"), nil, Kernel{})
	assert.NoError(t, err, "a release with dots but no slash is a plain name")
	for _, bad := range []string{"../evil", "a/b", ".."} {
		_, err = Install(dir, fakeBzImage(bad+" #1"), nil, Kernel{})
		assert.Error(t, err, bad)
	}
	_, err = Install(dir, []byte("not a kernel"), nil, Kernel{})
	assert.Error(t, err)
}

// TestInstallRefusesLinkedEntry: a cache entry that is a symlink to a
// directory of the user's is not written through (their vmlinuz, config
// and modules/ stay as they were); a real directory there (the control)
// is replaced.
func TestInstallRefusesLinkedEntry(t *testing.T) {
	const rel = "6.12.5-x"
	dir, victim := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(victim, "vmlinuz"), []byte("mine"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(victim, "modules"), 0o755))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, rel)))
	mods := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.Mkdir(mods, 0o755))
	_, err := Install(dir, fakeBzImage(rel+" #1"), []byte("CONFIG_X=y\n"), Kernel{ModulesDir: mods})
	require.ErrorContains(t, err, "not a directory of its own")
	b, err := os.ReadFile(filepath.Join(victim, "vmlinuz"))
	require.NoError(t, err)
	assert.Equal(t, "mine", string(b))
	assert.DirExists(t, filepath.Join(victim, "modules"))
	assert.NoFileExists(t, filepath.Join(victim, "kernel.json"))

	require.NoError(t, os.Remove(filepath.Join(dir, rel)))
	require.NoError(t, os.Mkdir(filepath.Join(dir, rel), 0o755))
	k, err := Install(dir, fakeBzImage(rel+" #1"), nil, Kernel{ModulesDir: mods})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, rel, "vmlinuz"), k.Path)
	assert.DirExists(t, filepath.Join(dir, rel, "modules"))
}

func TestCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	d, err := CacheDir()
	require.NoError(t, err)
	assert.Equal(t, "/x/cache/ktstr/kernels", d)
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	d, err = CacheDir()
	require.NoError(t, err)
	assert.Equal(t, "/home/u/.cache/ktstr/kernels", d)
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.12.9", "6.12.10", -1},
		{"6.12.117-1~deb12u1", "6.12.115-2~deb12u1", 1},
		{"6.12.010", "6.12.10", 0},
		{"6.12", "6.12.1", -1},
		{"a", "b", -1},
		{"", "", 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, CompareVersions(tt.a, tt.b), "%q vs %q", tt.a, tt.b)
		assert.Equal(t, -tt.want, CompareVersions(tt.b, tt.a), "%q vs %q", tt.b, tt.a)
	}
}

func TestParsePolicy(t *testing.T) {
	out := []byte(`linux-image-6.12.100+deb12-cloud-amd64-unsigned:
  Installed: (none)
  Candidate: (none)
  Version table:
linux-image-6.12.115+deb12-cloud-amd64-unsigned:
  Installed: (none)
  Candidate: 6.12.115-2~deb12u1
  Version table:
     6.12.115-2~deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.12.117+deb12-cloud-amd64-unsigned:
  Installed: (none)
  Candidate: 6.12.117-1~deb12u1
`)
	c := parsePolicy(out)
	assert.Equal(t, map[string]string{
		"linux-image-6.12.115+deb12-cloud-amd64-unsigned": "6.12.115-2~deb12u1",
		"linux-image-6.12.117+deb12-cloud-amd64-unsigned": "6.12.117-1~deb12u1",
	}, c)
	p, ok := newestCandidate(c)
	require.True(t, ok)
	assert.Equal(t, Package{"linux-image-6.12.117+deb12-cloud-amd64-unsigned", "6.12.117-1~deb12u1"}, p)
	_, ok = newestCandidate(parsePolicy(nil))
	assert.False(t, ok)
}

func tarOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func TestScanBoot(t *testing.T) {
	img := fakeBzImage("6.12.1 #1")
	image, config, err := scanBoot(tar.NewReader(bytes.NewReader(tarOf(t, map[string][]byte{
		"./boot/vmlinuz-6.12.1":       img,
		"./boot/config-6.12.1":        []byte("CONFIG_VIRTIO_CONSOLE=y\n"),
		"./boot/System.map-6.12.1":    []byte("map"),
		"./usr/lib/vmlinuz-elsewhere": []byte("not this"),
	}))))
	require.NoError(t, err)
	assert.Equal(t, img, image)
	assert.Equal(t, "CONFIG_VIRTIO_CONSOLE=y\n", string(config))

	image, _, err = scanBoot(tar.NewReader(bytes.NewReader(tarOf(t, map[string][]byte{"./usr/lib/vmlinuz-x": img}))))
	require.NoError(t, err)
	assert.Nil(t, image, "only /boot/vmlinuz-* counts")

	_, _, err = scanBoot(tar.NewReader(bytes.NewReader([]byte("not a tar archive, long enough to hold a header? no"))))
	assert.Error(t, err)
}

// TestExtractDeb reads a package dpkg-deb built (xz, as Debian 12's)
// with the Go reader.
func TestExtractDeb(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed")
	}
	root := t.TempDir()
	pkg := filepath.Join(root, "pkg")
	require.NoError(t, os.MkdirAll(filepath.Join(pkg, "DEBIAN"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(pkg, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "DEBIAN", "control"), []byte(
		"Package: fake-kernel\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: test\n"), 0o644))
	img := fakeBzImage("6.12.1-test #1")
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "boot", "vmlinuz-6.12.1-test"), img, 0o644))
	deb := filepath.Join(root, "fake.deb")
	out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", pkg, deb).CombinedOutput()
	require.NoError(t, err, string(out))

	image, config, err := ExtractDeb(deb)
	require.NoError(t, err)
	assert.Equal(t, img, image)
	assert.Nil(t, config)

	_, _, err = ExtractDeb(filepath.Join(root, "absent.deb"))
	assert.Error(t, err)
}
