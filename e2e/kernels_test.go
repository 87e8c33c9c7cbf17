package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/kernel"
	"github.com/ktstr/ktstr/replay"
)

// modularDeb downloads Debian 12's newest 6.1 cloud kernel package (its
// virtio-pci and virtio-console are modules) into dir, or skips with
// the reason.
func modularDeb(t *testing.T, dir string) string {
	t.Helper()
	pkg, err := kernel.FindDebianKernel(context.Background(), "6.1", "cloud")
	if err != nil {
		t.Skipf("e2e: Debian's 6.1 cloud kernel: %v", err)
	}
	require.NoError(t, os.Chmod(dir, 0o777)) // apt-get downloads as _apt
	cmd := exec.Command("apt-get", "download", pkg.Name)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("e2e: apt-get download %s: %v: %s", pkg.Name, err, lastLines(string(out), 1))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	require.Len(t, debs, 1)
	return debs[0]
}

// recordCLI runs `ktstr record --agent AGENT -q --force args...` with
// env added, and returns its output, exit status and console log.
func recordCLI(t *testing.T, e env, bin string, env []string, args ...string) (string, int, string) {
	t.Helper()
	r := recordBinary(t, e, bin, env, append([]string{"--agent", e.agent, "-q", "--force"}, args...)...)
	return r.out, r.code, r.console
}

var loadedRE = regexp.MustCompile(`ktstr-init: loaded (\d+) modules in (\d+) ms`)

// TestModularKernel: Debian 12's 6.1 cloud kernel, whose virtio-pci and
// virtio-console are modules, records and replays `steady` given as its
// .deb and fetched into the cache (`kernel fetch --release 6.1`, then the
// default kernel); its bare bzImage, without the modules, ends with
// no_bulk_port and a non-zero status instead of a silent run.
func TestModularKernel(t *testing.T) {
	e := setup(t)
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("e2e: the modular-kernel runs need apt-get to download Debian's 6.1 kernel")
	}
	dir := t.TempDir()
	bin := buildKtstr(t, e, dir)
	deb := modularDeb(t, t.TempDir())
	cache := filepath.Join(dir, "cache")
	xdg := []string{"XDG_CACHE_HOME=" + cache}

	check := func(t *testing.T, out string, code int, console, trace string) {
		require.Equal(t, 0, code, "%s\nconsole:\n%s", out, lastLines(console, 20))
		m := loadedRE.FindStringSubmatch(console)
		require.NotNil(t, m, "the agent says what it loaded:\n%s", lastLines(console, 20))
		assert.Equal(t, "6", m[1], "virtio, virtio_ring, virtio_pci and its two helpers, virtio_console")
		sysRdy := regexp.MustCompile(`boot to SYS_RDY (\d+) ms`).FindStringSubmatch(out)
		require.NotNil(t, sysRdy, out)
		t.Logf("modules loaded in %s ms (target < 300 ms under TCG); SYS_RDY at %s ms", m[2], sysRdy[1])
		b, err := os.ReadFile(trace)
		require.NoError(t, err)
		rep, err := replay.Trace(bytes.NewReader(b), trace, replay.Options{})
		require.NoError(t, err)
		assert.True(t, rep.Match, "%v", rep.Diff)
		assert.Empty(t, rep.Violations)
	}

	t.Run("deb", func(t *testing.T) {
		trace := filepath.Join(dir, "deb.zst")
		out, code, console := recordCLI(t, e, bin, xdg, "--kernel", deb, "--duration", "1s", "-o", trace)
		check(t, out, code, console, trace)
	})
	t.Run("fetched", func(t *testing.T) {
		cmd := exec.Command(bin, "kernel", "fetch", "-q", "--release", "6.1", "--flavour", "cloud")
		cmd.Env = append(os.Environ(), xdg...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		cmd = exec.Command(bin, "kernel", "list")
		cmd.Env = append(os.Environ(), xdg...)
		out, err = cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "virtio console: module")
		assert.Contains(t, string(out), "modules: here")
		trace := filepath.Join(dir, "fetched.zst")
		rout, code, console := recordCLI(t, e, bin, xdg, "--duration", "1s", "-o", trace)
		check(t, rout, code, console, trace)
	})
	t.Run("bare bzImage", func(t *testing.T) {
		image, _, err := kernel.ExtractDeb(deb)
		require.NoError(t, err)
		bz := filepath.Join(dir, "vmlinuz-modular")
		require.NoError(t, os.WriteFile(bz, image, 0o644))
		out, code, _ := recordCLI(t, e, bin, xdg, "--kernel", bz, "--duration", "1s", "-o", filepath.Join(dir, "bare.zst"))
		assert.Equal(t, 1, code, out)
		assert.Contains(t, out, "no_bulk_port")
		assert.Contains(t, out, "--modules DIR", "the report names the fix")
	})
}
