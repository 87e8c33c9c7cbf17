package seeds

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// TestSeedsWithoutTB: the seed loaders work without a testing.TB and
// find the checked-in traces.
func TestSeedsWithoutTB(t *testing.T) {
	paths, err := TracePaths()
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	files, err := TraceFiles()
	require.NoError(t, err)
	assert.Len(t, files, len(paths))
	streams, err := Streams()
	require.NoError(t, err)
	assert.Greater(t, len(streams), len(paths), "corpus.Seeds and the traces")

	t.Setenv(libfuzzer.NoSeedsEnv, "1")
	streams, err = Streams()
	require.NoError(t, err)
	assert.Empty(t, streams)
}
