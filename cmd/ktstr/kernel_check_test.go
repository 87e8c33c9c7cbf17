package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	kt "github.com/ktstr/ktstr/internal/kerneltest"
)

// writeImage writes a stand-in bzImage whose embedded config is config
// (none if nil) and returns its path.
func writeImage(t *testing.T, config *string) string {
	t.Helper()
	var c []byte
	if config != nil {
		c = []byte(*config)
	}
	p := filepath.Join(t.TempDir(), "bzImage")
	require.NoError(t, os.WriteFile(p, kt.BzImage(kt.Zstd(kt.Vmlinux(c))), 0o644))
	return p
}

func without(option string) *string {
	c := strings.Replace(kt.Config, "CONFIG_"+option+"=y", "# CONFIG_"+option+" is not set", 1)
	return &c
}

// TestKernelCheck: `ktstr kernel check` judges a bzImage given alone by
// the config built into it: exit 0 with everything a run needs, 2 with
// the missing option named, 1 when no config is known.
func TestKernelCheck(t *testing.T) {
	full := kt.Config
	for _, c := range []struct {
		name   string
		config *string
		args   []string
		code   int
		out    string // in stdout (0, 1) or stderr (2)
	}{
		{"everything", &full, []string{"--sched-ext"}, ExitOK, "ok: it has what a sched_ext run needs"},
		{"no virtio console", without("VIRTIO_CONSOLE"), nil, ExitUsage, "CONFIG_VIRTIO_CONSOLE is not set"},
		{"no sched_ext, for a sched_ext run", without("SCHED_CLASS_EXT"), []string{"--sched-ext"}, ExitUsage, "has no sched_ext"},
		{"no sched_ext, for another run", without("SCHED_CLASS_EXT"), nil, ExitOK, "ok: it has what a run needs"},
		{"no embedded config", nil, nil, ExitCheck, "its config is unknown (no embedded config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := ktstr(append([]string{"kernel", "check", "--kernel", writeImage(t, c.config)}, c.args...)...)
			require.Equal(t, c.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			assert.Contains(t, stdout+stderr, c.out)
			assert.Contains(t, stdout, "kernel "+kt.Release)
			if c.config != nil {
				assert.Contains(t, stdout, "config: the config built into the image (CONFIG_IKCONFIG=y)")
			}
			assert.LessOrEqual(t, strings.Count(stderr, "\n"), 1, "one line at most: %q", stderr)
		})
	}
	// Damage and hostility: one line on stderr, no stack trace, the
	// image's own strings escaped.
	dir := t.TempDir()
	v := kt.Vmlinux([]byte(kt.Config))
	copy(v[bytes.Index(v, []byte("IKCFG_ED")):], "IKCFG_XX")
	damaged := filepath.Join(dir, "damaged")
	require.NoError(t, os.WriteFile(damaged, kt.BzImage(kt.Zstd(v)), 0o644))
	magics := filepath.Join(dir, "magics")
	// Nothing but lz4 frame magics overflowed pierrec/lz4's stack.
	require.NoError(t, os.WriteFile(magics, kt.BzImage(kt.WithSize(bytes.Repeat([]byte{0x02, 0x21, 0x4c, 0x18}, 4<<20), 0)), 0o644))
	forged := kt.BzImage(kt.Zstd(kt.Vmlinux([]byte(kt.Config))))
	at := bytes.Index(forged, []byte(kt.Release))
	copy(forged[at:], "6.99\n\x1b[31mok:forged \x00")
	forgedPath := filepath.Join(dir, "forged")
	require.NoError(t, os.WriteFile(forgedPath, forged, 0o644))
	for _, c := range []struct {
		name, path string
		code       int
		out        string
	}{
		{"damaged built-in config", damaged, ExitUsage, "its built-in config cannot be read"},
		{"nothing but lz4 frame magics", magics, ExitCheck, "its config is unknown"},
		{"a release with a newline and an escape", forgedPath, ExitOK, `kernel 6.99\n\x1b[31mok:forged (sha256`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := ktstr("kernel", "check", "--kernel", c.path)
			require.Equal(t, c.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			assert.Contains(t, stdout+stderr, c.out)
			assert.NotContains(t, stdout+stderr, "\x1b")
			assert.NotContains(t, stderr, "goroutine")
			assert.LessOrEqual(t, strings.Count(stderr, "\n"), 1, "one line at most: %q", stderr)
		})
	}

	code, _, stderr := ktstr("kernel", "check", "--kernel", filepath.Join(t.TempDir(), "missing"))
	assert.Equal(t, ExitUsage, code, stderr)
	code, _, stderr = ktstr("kernel", "check", "stray")
	assert.Equal(t, ExitUsage, code, stderr)
}

// TestRecordPreflightFromEmbeddedConfig: `ktstr record --kernel IMAGE`,
// IMAGE alone with no virtio console in its embedded config, stops
// before anything boots (exit 2, saying where the config came from) and
// writes no trace.
func TestRecordPreflightFromEmbeddedConfig(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run.zst")
	code, _, stderr := ktstr("record", "-q", "--kernel", writeImage(t, without("VIRTIO_CONSOLE")), "-o", out)
	if code == ExitEnv {
		t.Skipf("record cannot start here: %s", strings.TrimSpace(stderr))
	}
	require.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "CONFIG_VIRTIO_CONSOLE is not set")
	assert.Contains(t, stderr, "judged by the config built into the image")
	assert.NoFileExists(t, out)
}

// TestRecordRefusesDamagedImage: an image whose built-in config cannot
// be read (its end marker overwritten) is refused before the boot, exit
// 2, with no trace written.
func TestRecordRefusesDamagedImage(t *testing.T) {
	v := kt.Vmlinux([]byte(kt.Config))
	copy(v[bytes.Index(v, []byte("IKCFG_ED")):], "IKCFG_XX")
	image := filepath.Join(t.TempDir(), "bzImage")
	require.NoError(t, os.WriteFile(image, kt.BzImage(kt.Zstd(v)), 0o644))
	out := filepath.Join(t.TempDir(), "run.zst")
	code, _, stderr := ktstr("record", "-q", "--kernel", image, "-o", out)
	if code == ExitEnv {
		t.Skipf("record cannot start here: %s", strings.TrimSpace(stderr))
	}
	require.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "the image is damaged")
	assert.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
	assert.NoFileExists(t, out)
}
