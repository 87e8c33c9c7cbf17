package fuzz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/fuzz/internal/seeds"
	"github.com/ktstr/ktstr/internal/libfuzzer"
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
// It also builds with go-118-fuzz-build (.clusterfuzzlite/build.sh), so
// the seeds are loaded without passing f on (seeds.Streams returns an
// error) and the fuzz function hands each input to libfuzzer.Exporter's
// function first.
func FuzzDispatch(f *testing.F) {
	streams, err := seeds.Streams()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range streams {
		f.Add(corpus.EncodeDispatchInput(s))
	}
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, data []byte) {
		if export != nil {
			export(t, data)
		}
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
	traces, err := seeds.TracePaths()
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) == 0 {
		t.Fatal("the seed traces are missing: run 'go generate ./corpus'")
	}
	for _, p := range traces {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		in, _, err := corpus.ExportTrace(f, corpus.DefaultExportLimit)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		name := corpus.GoFuzzFileName(corpus.MarshalGoFuzzFile(in))
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s is not exported (%v): run 'make corpus'", p, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		content, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := corpus.UnmarshalGoFuzzFile(content); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
		if got := corpus.GoFuzzFileName(content); got != e.Name() {
			t.Errorf("%s should be named %s: corpus files are named by their content hash", e.Name(), got)
		}
	}
}
