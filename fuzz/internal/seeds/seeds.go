// Package seeds gives the fuzz targets under fuzz/ their seed inputs:
// the streams of corpus.Seeds and of the checked-in traces under
// corpus/, and the trace files themselves. Whether a target builds its
// seeds at all (libfuzzer.Enabled) and how they reach OSS-Fuzz and
// ClusterFuzzLite, which ignore f.Add (libfuzzer.Exporter), is
// internal/libfuzzer's, which capture's and dispatch's harnesses use
// too: they cannot import this package, which imports replay.
//
// Its functions return errors instead of taking a testing.TB: every
// target must also build with go-118-fuzz-build, which rewrites a
// harness's *testing.F and *testing.T into types of its own that do not
// implement testing.TB.
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

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/internal/libfuzzer"
	"github.com/ktstr/ktstr/replay"
)

// TracePaths returns the paths of the checked-in traces
// (corpus.TracePaths) of the module that holds the working directory.
func TracePaths() ([]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	return corpus.TracePaths(root)
}

// Streams returns every seed stream: corpus.Seeds and the streams of the
// checked-in traces, each cut at corpus.DefaultExportLimit. Nil when
// seeding is off (libfuzzer.Enabled).
func Streams() ([]*replay.Stream, error) {
	if !libfuzzer.Enabled() {
		return nil, nil
	}
	var out []*replay.Stream
	for _, s := range corpus.Seeds() {
		out = append(out, s.Stream())
	}
	paths, err := TracePaths()
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("seeds: %w", err)
		}
		s, _, _, err := replay.ReadStream(bytes.NewReader(b), corpus.DefaultExportLimit)
		if err != nil {
			return nil, fmt.Errorf("seeds: seed trace %s: %w", p, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// TraceFiles returns the bytes of every checked-in trace. Nil when
// seeding is off (libfuzzer.Enabled).
func TraceFiles() ([][]byte, error) {
	if !libfuzzer.Enabled() {
		return nil, nil
	}
	paths, err := TracePaths()
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("seeds: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
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
