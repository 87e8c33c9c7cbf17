//go:build ktstr_brokengate

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSaveFailuresBrokenGate: with the SNRQ CRC check compiled out, the
// campaign fails (exit 1), saves the failing mutants, and each saved
// trace reproduces a violation under `ktstr replay` (exit 1).
func TestSaveFailuresBrokenGate(t *testing.T) {
	dir := t.TempDir()
	p := writeSeedTrace(t, dir, "snrq.zst", seedNamed(t, "snapshot-request-mixed"), false)
	out := filepath.Join(dir, "failures")
	code, stdout, stderr := ktstr("replay", "--mutate", "200", "--save-failures", out, p)
	require.Equal(t, 1, code, stderr)
	assert.Contains(t, stdout, "saved ")
	saved, err := filepath.Glob(filepath.Join(out, "*.zst"))
	require.NoError(t, err)
	require.NotEmpty(t, saved)
	for _, s := range saved[:min(3, len(saved))] {
		code, stdout, _ := ktstr("replay", s)
		assert.Equal(t, 1, code, "saved mutant %s must reproduce its violation", s)
		assert.Contains(t, stdout, "VIOLATED")
		_, err := os.Stat(s)
		assert.NoError(t, err)
	}
}
