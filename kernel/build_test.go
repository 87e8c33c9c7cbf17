package kernel

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"debug/elf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFragment(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []configSetting
		wantErr string
	}{
		{
			name: "settings, unset lines and comments",
			text: "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\n  CONFIG_C=\"x y\"  \nCONFIG_D=64\n",
			want: []configSetting{{"CONFIG_A", "y"}, {"CONFIG_B", "n"}, {"CONFIG_C", `"x y"`}, {"CONFIG_D", "64"}},
		},
		{name: "garbage line", text: "CONFIG_A=y\nA=y\n", wantErr: `line 2: "A=y"`},
		{name: "empty value", text: "CONFIG_A=\n", wantErr: "line 1"},
		{name: "duplicate", text: "CONFIG_A=y\n# CONFIG_A is not set\n", wantErr: "CONFIG_A is already set on line 1"},
		{name: "nothing set", text: "# only\n\n", wantErr: "sets no option"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFragment(tc.text)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// The shipped fragment parses and sets what sched_ext and the guest need.
func TestSchedExtFragment(t *testing.T) {
	frag, err := parseFragment(SchedExtFragment())
	require.NoError(t, err)
	set := make(map[string]string)
	for _, s := range frag {
		set[s.Name] = s.Value
	}
	for _, name := range []string{
		"CONFIG_SCHED_CLASS_EXT", "CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_DEBUG_INFO_BTF",
		"CONFIG_NET", "CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_CONSOLE", "CONFIG_ACPI",
		"CONFIG_DEVTMPFS", "CONFIG_BLK_DEV_INITRD", "CONFIG_RD_ZSTD", "CONFIG_RD_GZIP",
		"CONFIG_CGROUPS", "CONFIG_MAGIC_SYSRQ",
	} {
		assert.Equal(t, "y", set[name], name)
	}
}

func TestMergeConfig(t *testing.T) {
	base := "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n# comment\nCONFIG_KEEP=m"
	frag := []configSetting{{"CONFIG_A", "n"}, {"CONFIG_B", "y"}, {"CONFIG_NEW", "16"}}
	got := mergeConfig(base, frag)
	assert.Equal(t, "CONFIG_C=y\n# comment\nCONFIG_KEEP=m\n# ktstr sched_ext fragment\n"+
		"# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_NEW=16\n", got)
	// Merging again changes nothing but the position of the fragment.
	again := mergeConfig(got, frag)
	assert.Equal(t, strings.Count(got, "CONFIG_"), strings.Count(again, "CONFIG_"))
	assert.Empty(t, droppedSettings(again, frag))
}

func TestDroppedSettings(t *testing.T) {
	frag := []configSetting{{"CONFIG_A", "y"}, {"CONFIG_B", "n"}, {"CONFIG_C", "n"}, {"CONFIG_D", "y"}}
	// Positive control: everything as asked (C unset by absence).
	assert.Empty(t, droppedSettings("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=y\n", frag))
	got := droppedSettings("CONFIG_A=m\nCONFIG_B=y\n", frag)
	assert.Equal(t, []string{
		"CONFIG_A=y (got: CONFIG_A=m)",
		"# CONFIG_B is not set (got: CONFIG_B=y)",
		"CONFIG_D=y (got: absent)",
	}, got)
}

func TestParseDpkgStatus(t *testing.T) {
	out := "bc ii \nlibelf-dev:amd64 ii \nflex rc \nbison un \n\ngarbage\n"
	got := parseDpkgStatus(out)
	assert.Equal(t, map[string]bool{"bc": true, "libelf-dev": true}, got)
}

func TestMissingPackagesError(t *testing.T) {
	e := &MissingPackagesError{Packages: []string{"bison", "flex"}}
	assert.Equal(t, "sudo apt-get install -y --no-install-recommends bison flex", e.Command())
	assert.Contains(t, e.Error(), "bison flex")
	assert.Contains(t, e.Error(), e.Command())
	assert.NotContains(t, e.Error(), "\n")
}

func TestBuildPackages(t *testing.T) {
	p := buildPackages("16")
	assert.Contains(t, p, SchedExtSourcePackage)
	assert.Contains(t, p, "clang-16")
	assert.Contains(t, p, "dwarves")
	assert.Contains(t, buildPackages("19"), "llvm-19")
}

func TestBuildInputsKey(t *testing.T) {
	base := BuildInputs{
		Recipe: buildRecipe, SourcePackage: "linux-source-6.12", SourceVersion: "6.12.1-1",
		BaseConfig: "tinyconfig", FragmentSHA256: "f", Arch: "x86_64", CC: "gcc 12",
		Clang: "clang 16", Pahole: "v1.24", Schedulers: []string{"scx_simple"}, StaticLink: true,
	}
	k := base.Key()
	require.Len(t, k, 64)
	assert.Equal(t, k, base.Key(), "stable")
	mutations := map[string]func(*BuildInputs){
		"recipe":    func(in *BuildInputs) { in.Recipe = "x" },
		"version":   func(in *BuildInputs) { in.SourceVersion = "6.12.2-1" },
		"base":      func(in *BuildInputs) { in.BaseConfig = "defconfig" },
		"fragment":  func(in *BuildInputs) { in.FragmentSHA256 = "g" },
		"cc":        func(in *BuildInputs) { in.CC = "gcc 13" },
		"clang":     func(in *BuildInputs) { in.Clang = "clang 19" },
		"pahole":    func(in *BuildInputs) { in.Pahole = "v1.25" },
		"scheds":    func(in *BuildInputs) { in.Schedulers = []string{"scx_qmap", "scx_simple"} },
		"static":    func(in *BuildInputs) { in.StaticLink = false },
		"arch":      func(in *BuildInputs) { in.Arch = "arm64" },
		"source pk": func(in *BuildInputs) { in.SourcePackage = "linux-source-6.1" },
	}
	for name, mutate := range mutations {
		in := base
		in.Schedulers = append([]string(nil), base.Schedulers...)
		mutate(&in)
		assert.NotEqual(t, k, in.Key(), name)
	}
}

func TestBuildOptionsDefaults(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg")
	o, err := BuildOptions{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, "/tmp/xdg/ktstr", o.CacheDir)
	assert.Equal(t, []string{"scx_central", "scx_flatcg", "scx_qmap", "scx_simple"}, o.Schedulers)
	assert.Equal(t, "16", o.LLVMVersion)
	assert.Positive(t, o.Jobs)

	o, err = BuildOptions{CacheDir: "/c", Schedulers: []string{"scx_simple", "scx_simple"}}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, []string{"scx_simple"}, o.Schedulers)

	for _, bad := range []BuildOptions{
		{CacheDir: "/c", Schedulers: []string{"../evil"}},
		{CacheDir: "/c", Schedulers: []string{"simple"}},
		{CacheDir: "/c", LLVMVersion: "16; rm"},
	} {
		_, err := bad.withDefaults()
		require.ErrorIs(t, err, ErrBadOption, "%+v", bad)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bzImage"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "scx_simple"), []byte("sched"), 0o755))
	ksum, ksize, err := fileSHA256(filepath.Join(dir, "bzImage"))
	require.NoError(t, err)
	assert.Equal(t, int64(6), ksize)
	ssum, _, err := fileSHA256(filepath.Join(dir, "bin", "scx_simple"))
	require.NoError(t, err)
	m := &Manifest{
		Key: strings.Repeat("a", 64), Dir: dir, Kernel: "bzImage", KernelSHA256: ksum, KernelSize: ksize,
		Schedulers: []SchedulerBinary{{Name: "scx_simple", Path: "bin/scx_simple", SHA256: ssum, Size: 5}},
		BuiltAt:    time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC),
	}
	require.NoError(t, writeManifest(m))
	got, err := readManifest(dir)
	require.NoError(t, err)
	assert.Equal(t, m, got)
	assert.Equal(t, filepath.Join(dir, "bzImage"), got.KernelPath())
	p, ok := got.SchedulerPath("scx_simple")
	assert.True(t, ok)
	assert.Equal(t, filepath.Join(dir, "bin", "scx_simple"), p)
	_, ok = got.SchedulerPath("scx_qmap")
	assert.False(t, ok)

	// A changed scheduler binary makes the build unusable.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "scx_simple"), []byte("other"), 0o755))
	_, err = readManifest(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "manifest says")

	// A path leaving the build directory is refused.
	m.Schedulers = nil
	m.Kernel = "../bzImage"
	require.NoError(t, writeManifest(m))
	_, err = readManifest(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad path")

	_, err = readManifest(t.TempDir())
	require.ErrorIs(t, err, os.ErrNotExist)
}

// elfImage returns a minimal x86-64 ELF executable, with a PT_INTERP
// program header when interp is set.
func elfImage(t *testing.T, interp bool) []byte {
	t.Helper()
	var phnum uint16
	if interp {
		phnum = 1
	}
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: phnum, Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	require.NoError(t, binary.Write(&b, binary.LittleEndian, h))
	if interp {
		p := elf.Prog64{Type: uint32(elf.PT_INTERP), Off: 120, Filesz: 28, Memsz: 28, Align: 1}
		require.NoError(t, binary.Write(&b, binary.LittleEndian, p))
		b.WriteString("/lib64/ld-linux-x86-64.so.2\x00")
	}
	return b.Bytes()
}

func TestCheckStatic(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "static")
	dynamic := filepath.Join(dir, "dynamic")
	text := filepath.Join(dir, "text")
	require.NoError(t, os.WriteFile(static, elfImage(t, false), 0o755))
	require.NoError(t, os.WriteFile(dynamic, elfImage(t, true), 0o755))
	require.NoError(t, os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755))

	require.NoError(t, checkStatic(static))
	err := checkStatic(dynamic)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dynamically linked")
	require.Error(t, checkStatic(text))
	require.Error(t, checkStatic(filepath.Join(dir, "absent")))
}

// fakeClock advances by step on every reading.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

func TestStageLog(t *testing.T) {
	var log, progress bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0), step: 4 * time.Second}
	sl := newStageLog("kernel", &log, &progress, false, clk.now)
	input := "make[1]: Entering directory '/o'\n" +
		"  CC      kernel/sched/core.o\n" +
		"  CC      kernel/sched/ext.o\n" +
		"  LD      vmlinux.o\n" +
		"  BTF     .btf.vmlinux.bin.o\n" +
		"Kernel: arch/x86/boot/bzImage is ready  (#1)\n"
	// Feed in pieces that split lines.
	for _, chunk := range []string{input[:10], input[10:47], input[47:]} {
		n, err := sl.Write([]byte(chunk))
		require.NoError(t, err)
		assert.Equal(t, len(chunk), n)
	}
	assert.Equal(t, input, log.String(), "the log keeps everything")
	assert.Equal(t, 4, sl.steps)
	assert.Equal(t, "BTF .btf.vmlinux.bin.o", sl.last)
	// A status line at most every 15 s of the fake clock (4 s a line).
	lines := strings.Split(strings.TrimRight(progress.String(), "\n"), "\n")
	require.Len(t, lines, 1)
	assert.Equal(t, "  kernel: 3 steps, 20s: LD vmlinux.o", lines[0])

	sl.done()
	assert.Contains(t, progress.String(), "kernel: done, 4 steps")
	progress.Reset()
	sl.failure("/x/kernel-build.log")
	assert.Contains(t, progress.String(), "the last lines of /x/kernel-build.log")
	assert.Contains(t, progress.String(), "bzImage is ready")

	var vprog bytes.Buffer
	v := newStageLog("s", &bytes.Buffer{}, &vprog, true, clk.now)
	_, err := v.Write([]byte("a\nb\n"))
	require.NoError(t, err)
	assert.Equal(t, "a\nb\n", vprog.String(), "verbose copies every line")

	many := newStageLog("s", &bytes.Buffer{}, &bytes.Buffer{}, false, clk.now)
	for i := 0; i < 3*stageTailLines; i++ {
		_, err := many.Write([]byte("line\n"))
		require.NoError(t, err)
	}
	assert.Len(t, many.tail, stageTailLines)
}

func TestLastLines(t *testing.T) {
	assert.Equal(t, "c\nd\n", lastLines("a\nb\nc\nd\n", 2))
	assert.Equal(t, "a\n", lastLines("a", 5))
	assert.Equal(t, "", lastLines("", 5))
}

func TestSafeName(t *testing.T) {
	assert.Equal(t, "6.12.117-1_deb12u1", safeName("6.12.117-1~deb12u1"))
	assert.Equal(t, "a_b", safeName("a/b"))
}
