package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadSummaryIsBounded: a summary past maxSummary, a directory or a
// missing file is refused; a summary-sized file is read (the control).
func TestReadSummaryIsBounded(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "s.json")
	require.NoError(t, os.WriteFile(ok, []byte(`{"shard":"0/1","runs":1}`), 0o644))
	b, err := readSummary(ok)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"runs":1`)

	big := filepath.Join(dir, "big.json")
	require.NoError(t, os.WriteFile(big, make([]byte, maxSummary+1), 0o644))
	_, err = readSummary(big)
	assert.ErrorContains(t, err, "not a soak summary")
	_, err = readSummary(dir)
	assert.Error(t, err)
	_, err = readSummary(filepath.Join(dir, "absent"))
	assert.Error(t, err)
}
