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

	got, err := rerunArgs(meta, "", nil)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"--scenario=hostile", "--duration=2s", "--cpus=1", "--kernel=" + img}, got)

	got, err = rerunArgs(meta, "/my/agent", nil)
	require.NoError(t, err)
	assert.Contains(t, got, "--agent=/my/agent")

	// The path now holds another image: the cache's copy of the recorded one.
	require.NoError(t, os.WriteFile(img, []byte("rebuilt"), 0o644))
	got, err = rerunArgs(meta, "", map[string]string{sha: "/cache/6.12.1/vmlinuz"})
	require.NoError(t, err)
	assert.Contains(t, got, "--kernel=/cache/6.12.1/vmlinuz")

	// Neither: exit 3, naming the fix.
	_, err = rerunArgs(meta, "", nil)
	var ee *exitError
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, ExitEnv, ee.code)
	assert.Contains(t, err.Error(), "ktstr kernel fetch")

	// Not a recorded run (an import): exit 2.
	_, err = rerunArgs(capture.Meta{CommandLine: []string{"ktstr", "trace", "import", "--raw", "x"}}, "", nil)
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, ExitUsage, ee.code)
}
