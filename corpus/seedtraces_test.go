package corpus

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/replay"
)

var update = flag.Bool("update", false, "rewrite the seed traces under corpus/seeds")

// TestSeedTracesUpToDate checks that corpus/seeds holds exactly one
// trace per seed stream and that each replays to the seed's deliveries
// and times. With -update (go generate) it rewrites them first. Traces
// are compared by content, not bytes, so a zstd encoder change does not
// make them stale.
func TestSeedTracesUpToDate(t *testing.T) {
	if *update {
		writeSeedTraces(t)
	}
	want := map[string]bool{}
	for _, seed := range Seeds() {
		name := seed.Name + ".zst"
		want[name] = true
		t.Run(seed.Name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(SeedTraceDir, name))
			require.NoError(t, err, "run 'go generate ./corpus' to write the seed traces")
			defer f.Close()
			got, meta, end, err := replay.ReadStream(f, 1<<20)
			require.NoError(t, err)
			assert.Nil(t, end, "seed traces carry no END record")
			assert.Equal(t, seed.Meta(), meta)
			assertSameStream(t, seed.Stream(), got, "stale: run 'go generate ./corpus'")
		})
	}
	entries, err := os.ReadDir(SeedTraceDir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.True(t, want[e.Name()], "%s/%s is not a seed; run 'go generate ./corpus' to remove it", SeedTraceDir, e.Name())
	}
}

// writeSeedTraces rewrites corpus/seeds from Seeds, removing traces of
// seeds that no longer exist.
func writeSeedTraces(t *testing.T) {
	require.NoError(t, os.MkdirAll(SeedTraceDir, 0o755))
	old, err := filepath.Glob(filepath.Join(SeedTraceDir, "*.zst"))
	require.NoError(t, err)
	for _, p := range old {
		require.NoError(t, os.Remove(p))
	}
	for _, seed := range Seeds() {
		var buf bytes.Buffer
		require.NoError(t, seed.WriteTrace(&buf))
		require.NoError(t, os.WriteFile(filepath.Join(SeedTraceDir, seed.Name+".zst"), buf.Bytes(), 0o644))
	}
}

// TestSeedNamesAreFileNames keeps seed names usable as file names.
func TestSeedNamesAreFileNames(t *testing.T) {
	seen := map[string]bool{}
	for _, seed := range Seeds() {
		assert.NotEmpty(t, seed.Name)
		assert.False(t, strings.ContainsAny(seed.Name, "/\\ \t\n."), "seed name %q", seed.Name)
		assert.False(t, seen[seed.Name], "duplicate seed name %q", seed.Name)
		seen[seed.Name] = true
	}
}

// assertSameStream compares two streams delivery by delivery.
func assertSameStream(t *testing.T, want, got *replay.Stream, msg string) {
	t.Helper()
	assert.Equal(t, want.Data, got.Data, msg)
	assert.Equal(t, want.Starts, got.Starts, msg)
	assert.Equal(t, want.Times, got.Times, msg)
}

// TestTracePaths finds the checked-in seed traces, each a .zst under
// SeedTraceDir, and nothing under a root without them.
func TestTracePaths(t *testing.T) {
	paths, err := TracePaths("..")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		assert.Equal(t, ".zst", filepath.Ext(p), p)
	}
	assert.Equal(t, filepath.Join("..", "corpus", SeedTraceDir), filepath.Dir(paths[0]))
	none, err := TracePaths(t.TempDir())
	require.NoError(t, err)
	assert.Empty(t, none)
}
