package fuzz

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/replay"
)

// noSeedsEnv, set to 1, makes every target of this package start from
// an empty corpus (no f.Add seeds); with the package copied away from
// its testdata/ this measures how long fuzzing takes to find a bug on
// its own (make fuzz-brokengate).
const noSeedsEnv = "KTSTR_FUZZ_NOSEEDS"

// seeding reports whether targets should add their seeds.
func seeding() bool { return os.Getenv(noSeedsEnv) != "1" }

// checkedInTraces returns the paths of the checked-in traces: the seed
// traces and the real-run traces under corpus/.
func checkedInTraces(tb testing.TB) []string {
	tb.Helper()
	var paths []string
	for _, dir := range []string{corpus.SeedTraceDir, corpus.RealTraceDir} {
		m, err := filepath.Glob(filepath.Join("..", "corpus", dir, "*.zst"))
		require.NoError(tb, err)
		paths = append(paths, m...)
	}
	return paths
}

// seedStreams returns every seed stream: corpus.Seeds and the streams
// of the checked-in traces. Nil when seeding is off.
func seedStreams(tb testing.TB) []*replay.Stream {
	tb.Helper()
	if !seeding() {
		return nil
	}
	var out []*replay.Stream
	for _, s := range corpus.Seeds() {
		out = append(out, s.Stream())
	}
	for _, p := range checkedInTraces(tb) {
		b, err := os.ReadFile(p)
		require.NoError(tb, err)
		s, _, _, err := replay.ReadStream(bytes.NewReader(b), corpus.DefaultExportLimit)
		require.NoError(tb, err, p)
		out = append(out, s)
	}
	return out
}

// seedTraceFiles returns the bytes of every checked-in trace. Nil when
// seeding is off.
func seedTraceFiles(tb testing.TB) [][]byte {
	tb.Helper()
	if !seeding() {
		return nil
	}
	var out [][]byte
	for _, p := range checkedInTraces(tb) {
		b, err := os.ReadFile(p)
		require.NoError(tb, err)
		out = append(out, b)
	}
	return out
}
