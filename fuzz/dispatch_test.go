package fuzz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/replay"
)

// FuzzDispatch decodes its input as a delivery table followed by a TX
// stream (corpus.DecodeDispatchInput: the leading bytes choose the split
// points and the clock) and runs it through replay.CheckStream: the
// streaming Assembler and Dispatch fed one delivery at a time, checked
// frame by frame for invariants 1–5, 7 and 8, against the independent
// reference model (10), and against a second, random split (6).
//
// Its corpus is seeded from corpus.Seeds and the checked-in traces, and
// testdata/fuzz/FuzzDispatch holds the same traces exported by `ktstr
// corpus export`, so every recorded run checked in becomes a test case.
func FuzzDispatch(f *testing.F) {
	for _, s := range seedStreams(f) {
		f.Add(corpus.EncodeDispatchInput(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if v := checkDispatch(data); len(v) > 0 {
			t.Fatalf("%d invariant violation(s) on a %d-byte input:\n  %s", len(v), len(data), strings.Join(v, "\n  "))
		}
	})
}

// checkDispatch runs one FuzzDispatch input and returns the broken
// invariants.
func checkDispatch(data []byte) []string {
	s := corpus.DecodeDispatchInput(data)
	_, _, v := replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkRecorded})
	return v
}

// TestCheckedInCorpusCoversTraces checks that testdata/fuzz/FuzzDispatch
// holds the export of every checked-in trace (run `make corpus` after
// adding one), and that every file there is a valid FuzzDispatch input
// file.
func TestCheckedInCorpusCoversTraces(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDispatch")
	traces := checkedInTraces(t)
	require.NotEmpty(t, traces, "the seed traces are missing: run 'go generate ./corpus'")
	for _, p := range traces {
		f, err := os.Open(p)
		require.NoError(t, err)
		in, _, err := corpus.ExportTrace(f, corpus.DefaultExportLimit)
		f.Close()
		require.NoError(t, err, p)
		name := corpus.GoFuzzFileName(corpus.MarshalGoFuzzFile(in))
		assert.FileExists(t, filepath.Join(dir, name), "%s is not exported: run 'make corpus'", p)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		content, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		_, err = corpus.UnmarshalGoFuzzFile(content)
		assert.NoError(t, err, e.Name())
		assert.Equal(t, corpus.GoFuzzFileName(content), e.Name(), "corpus files are named by their content hash")
	}
}
