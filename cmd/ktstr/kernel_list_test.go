package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKernelListEscapesEntryNames: a cache entry whose directory name
// holds a terminal escape (an OSC that sets the window title) and whose
// config is gone is listed with the escape written out, in the path and
// in the error about its config, never raw; the entry's release (the
// control) is printed as it is.
func TestKernelListEscapesEntryNames(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	ent := filepath.Join(cache, "ktstr", "kernels", "\x1b]0;pwned\x07")
	require.NoError(t, os.MkdirAll(ent, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ent, "vmlinuz"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(ent, "kernel.json"), []byte(`{"release":"6.1.0-1","config":"c"}`), 0o644))
	code, stdout, stderr := ktstr("kernel", "list")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stdout, "6.1.0-1")
	assert.Contains(t, stdout, "cache entry unreadable")
	assert.Contains(t, stdout, `\x1b]0;pwned\a`)
	assert.NotContains(t, stdout+stderr, "\x1b")
	assert.NotContains(t, stdout+stderr, "\x07")
}

// TestKernelFetchRefusesOddPackageNames: a --package that is no Debian
// package name (one apt-get would take for an option, or for two
// packages) is a usage error of one line, before apt is asked anything.
func TestKernelFetchRefusesOddPackageNames(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("PATH", t.TempDir()) // no apt: a name that got through would fail with exit 3
	for _, name := range []string{"-oDebug::NoLocking=1", "linux-image-6.12 other", "Linux-Image", "x", "linux-image-\x1b[2J", strings.Repeat("a", 201)} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := ktstr("kernel", "fetch", "--package", name)
			require.Equal(t, ExitUsage, code, "stdout: %s\nstderr: %s", stdout, stderr)
			assert.Contains(t, stderr, "not a Debian package name")
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.NotContains(t, stderr, "\x1b")
		})
	}
	t.Run("control: a package name", func(t *testing.T) {
		code, _, stderr := ktstr("kernel", "fetch", "-q", "--package", "linux-image-6.12.117+deb12-cloud-amd64-unsigned")
		assert.NotEqual(t, ExitUsage, code, stderr)
		assert.NotContains(t, stderr, "not a Debian package name")
	})
}
