package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/kernel"
)

// TestRerunArgs: the recorded command line comes back without its
// output flags, with the kernel pinned by SHA-256 (the given path while
// it holds that image, else the cache's copy), and a trace whose kernel
// is gone, or that records no `ktstr record`, is refused with its fix.
func TestRerunArgs(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "bzImage")
	require.NoError(t, os.WriteFile(img, []byte("kernel image"), 0o644))
	sum := sha256.Sum256([]byte("kernel image"))
	sha := hex.EncodeToString(sum[:])
	cl := []string{"ktstr", "record", "--scenario", "hostile", "--duration", "2s", "--kernel", img, "-o", "x.zst", "--force", "-q", "--cpus=1"}
	meta := capture.Meta{CommandLine: cl, KernelSHA256: sha, KernelPath: img, KernelRelease: "6.12.1"}

	got, err := rerunArgs(meta, rerunFiles{}, nil)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"--scenario=hostile", "--duration=2s", "--cpus=1", "--kernel=" + img}, got)

	got, err = rerunArgs(meta, rerunFiles{agent: "/my/agent"}, nil)
	require.NoError(t, err)
	assert.Contains(t, got, "--agent=/my/agent")

	// The path now holds another image: the cache's copy of the recorded one.
	require.NoError(t, os.WriteFile(img, []byte("rebuilt"), 0o644))
	got, err = rerunArgs(meta, rerunFiles{}, map[string]kernel.Kernel{sha: {Path: "/cache/6.12.1/vmlinuz"}})
	require.NoError(t, err)
	assert.Contains(t, got, "--kernel=/cache/6.12.1/vmlinuz")

	// Neither: exit 3, naming the fix.
	_, err = rerunArgs(meta, rerunFiles{}, nil)
	var ee *exitError
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, ExitEnv, ee.code)
	assert.Contains(t, err.Error(), "ktstr kernel fetch")

	// Not a recorded run (an import): exit 2.
	_, err = rerunArgs(capture.Meta{CommandLine: []string{"ktstr", "trace", "import", "--raw", "x"}}, rerunFiles{}, nil)
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, ExitUsage, ee.code)
}

// TestRerunHostFiles: a trace never chooses a program or file on this
// host. One that names an agent, a scheduler or a module tree is refused
// (exit 2) with the flags to give, which, given by the user, are what
// runs; one whose kernel path no SHA-256 pins, or whose digest is not
// one, is refused too. Control: a trace naming none of them reruns as
// recorded.
func TestRerunHostFiles(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "bzImage")
	require.NoError(t, os.WriteFile(img, []byte("kernel image"), 0o644))
	sum := sha256.Sum256([]byte("kernel image"))
	sha := hex.EncodeToString(sum[:])
	meta := func(extra ...string) capture.Meta {
		cl := append([]string{"ktstr", "record", "--scenario", "steady", "--kernel", img, "-o", "x.zst"}, extra...)
		return capture.Meta{CommandLine: cl, KernelSHA256: sha, KernelPath: img}
	}
	got, err := rerunArgs(meta(), rerunFiles{}, nil)
	require.NoError(t, err, "control: no host file named")
	assert.ElementsMatch(t, []string{"--scenario=steady", "--kernel=" + img}, got)

	for _, tt := range []struct {
		flag, value string
		given       rerunFiles
		want        string
	}{
		{"--agent", "./ktstr-init", rerunFiles{agent: "/mine/ktstr-init"}, "--agent=/mine/ktstr-init"},
		{"--scheduler", "/tmp/scx_evil", rerunFiles{scheduler: "/mine/scx_simple"}, "--scheduler=/mine/scx_simple"},
		{"--modules", "/root/.ssh", rerunFiles{modules: "/mine/lib/modules/6.12"}, "--modules=/mine/lib/modules/6.12"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			_, err := rerunArgs(meta(tt.flag, tt.value), rerunFiles{}, nil)
			var ee *exitError
			require.True(t, errors.As(err, &ee), "%v", err)
			assert.Equal(t, ExitUsage, ee.code)
			assert.Contains(t, err.Error(), tt.flag+" "+tt.value, "the message names what the trace asked for")
			assert.Contains(t, err.Error(), "give them to rerun yourself")

			got, err := rerunArgs(meta(tt.flag, tt.value), tt.given, nil)
			require.NoError(t, err)
			assert.Contains(t, got, tt.want, "the user's file is the one used")
			for _, a := range got {
				assert.NotContains(t, a, tt.value, "the trace's file is not")
			}
		})
	}

	t.Run("a kernel path the trace names is not taken on its word", func(t *testing.T) {
		// kernel_path hashes to the digest, --kernel names another path
		// (a directory, a package): the hashed image is booted, never
		// the unhashed path.
		m := meta()
		m.CommandLine = []string{"ktstr", "record", "--kernel=/", "-o", "x.zst"}
		got, err := rerunArgs(m, rerunFiles{}, nil)
		require.NoError(t, err)
		assert.Contains(t, got, "--kernel="+img)
		assert.NotContains(t, got, "--kernel=/")
	})
	t.Run("a command line record would not have run", func(t *testing.T) {
		for _, cl := range [][]string{
			{"ktstr", "record", "--cpus=1", "junk", "--agent=/bin/sh"},
			{"/bin/evil", "record", "--cpus=1"},
		} {
			_, err := rerunArgs(capture.Meta{CommandLine: cl}, rerunFiles{}, nil)
			var ee *exitError
			require.True(t, errors.As(err, &ee), "%v", err)
			assert.Equal(t, ExitUsage, ee.code)
			assert.Contains(t, err.Error(), "not one ktstr record ran")
		}
	})
	t.Run("the cache's module tree comes with its image", func(t *testing.T) {
		cached := map[string]kernel.Kernel{sha: {Path: img, ModulesDir: "/cache/6.12.1/lib/modules/6.12.1"}}
		got, err := rerunArgs(meta(), rerunFiles{}, cached)
		require.NoError(t, err)
		assert.Contains(t, got, "--modules=/cache/6.12.1/lib/modules/6.12.1")
		// Control: an entry without modules adds none, and the user's
		// --kernel or --modules wins.
		got, err = rerunArgs(meta(), rerunFiles{}, map[string]kernel.Kernel{sha: {Path: img}})
		require.NoError(t, err)
		for _, a := range got {
			assert.NotContains(t, a, "--modules")
		}
		got, err = rerunArgs(meta(), rerunFiles{modules: "/mine"}, cached)
		require.NoError(t, err)
		assert.Contains(t, got, "--modules=/mine")
		assert.NotContains(t, got, "--modules=/cache/6.12.1/lib/modules/6.12.1")
	})
	t.Run("budgets", func(t *testing.T) {
		// A guest can fill a budget, and the disk: a trace may lower the
		// trace's or the console log's, never raise one past record's
		// default on its own.
		for _, b := range []struct {
			flag, lower string
			given       rerunFiles
		}{
			{"--max-trace", "512MiB", rerunFiles{maxTrace: 8 << 30}},
			{"--max-console", "1MiB", rerunFiles{maxConsole: 8 << 30}},
		} {
			got, err := rerunArgs(meta(b.flag, b.lower), rerunFiles{}, nil)
			require.NoError(t, err, "control: a lower budget is the trace's to set")
			assert.Contains(t, got, b.flag+"="+b.lower)
			_, err = rerunArgs(meta(b.flag, "1000TiB"), rerunFiles{}, nil)
			var ee *exitError
			require.True(t, errors.As(err, &ee), "%v", err)
			assert.Equal(t, ExitUsage, ee.code)
			assert.Contains(t, err.Error(), b.flag+" 1000TiB")
			got, err = rerunArgs(meta(b.flag, "1000TiB"), b.given, nil)
			require.NoError(t, err)
			assert.Contains(t, got, b.flag+"=8GiB", "the user's budget is the one used")
			assert.NotContains(t, got, b.flag+"=1000TiB")
		}
	})

	t.Run("kernel without a digest", func(t *testing.T) {
		m := meta()
		m.KernelSHA256 = ""
		_, err := rerunArgs(m, rerunFiles{}, nil)
		var ee *exitError
		require.True(t, errors.As(err, &ee))
		assert.Equal(t, ExitUsage, ee.code)
		assert.Contains(t, err.Error(), "records no SHA-256")
		got, err := rerunArgs(m, rerunFiles{kernel: "/mine/bzImage"}, nil)
		require.NoError(t, err)
		assert.Contains(t, got, "--kernel=/mine/bzImage")
		// The default kernel (no --kernel recorded) needs no digest.
		got, err = rerunArgs(capture.Meta{CommandLine: []string{"ktstr", "record", "-o", "x"}}, rerunFiles{}, nil)
		require.NoError(t, err)
		assert.Empty(t, got)
	})
	t.Run("a digest that is not one", func(t *testing.T) {
		m := meta()
		m.KernelSHA256 = "\x1b[2Kforged"
		_, err := rerunArgs(m, rerunFiles{}, nil)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "\x1b", "the trace's bytes are quoted")
	})
}

// TestResolveAgentIsTheFileChecked: a bare --agent name is the file in
// this directory, the one checked and packed, never one of that name in
// $PATH (which the host would otherwise run to list scenarios). Control:
// a path with a directory resolves to the same file.
func TestResolveAgentIsTheFileChecked(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, elsewhere} {
		require.NoError(t, os.WriteFile(filepath.Join(d, "ktstr-init"), []byte("#!/bin/sh\n"), 0o755))
	}
	t.Setenv("PATH", elsewhere)
	t.Chdir(dir)
	got, err := resolveAgent(t.Context(), "ktstr-init")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "ktstr-init"), got)
	got, err = resolveAgent(t.Context(), "./ktstr-init")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "ktstr-init"), got)
}
