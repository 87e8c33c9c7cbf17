// Package seeds gives the fuzz targets under fuzz/ their seed inputs:
// the streams of corpus.Seeds and of the checked-in traces under
// corpus/, and the trace files themselves.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) these are recorded or hand-made tap bytes, handed to a fuzz
// target before the fuzzer makes up its own. It uses no assertion
// library: every fuzz package imports it, and anything it links in is
// coverage-instrumented in every fuzz binary, which slows the fuzzing
// engine down (docs/fuzzing.md).
package seeds

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/replay"
)

// NoSeedsEnv, set to 1, makes every target that asks Enabled start from
// an empty corpus (no f.Add seeds); with the package copied away from
// its testdata/ this measures how long fuzzing takes to find a bug on
// its own (make fuzz-brokengate).
const NoSeedsEnv = "KTSTR_FUZZ_NOSEEDS"

// Enabled reports whether targets should add their seeds.
func Enabled() bool { return os.Getenv(NoSeedsEnv) != "1" }

// TracePaths returns the paths of the checked-in traces: the seed
// traces and the real-run traces under corpus/ of the module that holds
// the working directory.
func TracePaths(tb testing.TB) []string {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	var paths []string
	for _, dir := range []string{corpus.SeedTraceDir, corpus.RealTraceDir} {
		m, err := filepath.Glob(filepath.Join(root, "corpus", dir, "*.zst"))
		if err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, m...)
	}
	return paths
}

// Streams returns every seed stream: corpus.Seeds and the streams of the
// checked-in traces, each cut at corpus.DefaultExportLimit. Nil when
// seeding is off.
func Streams(tb testing.TB) []*replay.Stream {
	tb.Helper()
	if !Enabled() {
		return nil
	}
	var out []*replay.Stream
	for _, s := range corpus.Seeds() {
		out = append(out, s.Stream())
	}
	for _, p := range TracePaths(tb) {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		s, _, _, err := replay.ReadStream(bytes.NewReader(b), corpus.DefaultExportLimit)
		if err != nil {
			tb.Fatalf("seed trace %s: %v", p, err)
		}
		out = append(out, s)
	}
	return out
}

// TraceFiles returns the bytes of every checked-in trace. Nil when
// seeding is off.
func TraceFiles(tb testing.TB) [][]byte {
	tb.Helper()
	if !Enabled() {
		return nil
	}
	var out [][]byte
	for _, p := range TracePaths(tb) {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("seeds: finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("seeds: no go.mod at or above the working directory; run the fuzz tests from inside the ktstr module")
		}
		dir = parent
	}
}
