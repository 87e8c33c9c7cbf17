package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/corpus"
)

// ktstrCorpus runs `ktstr corpus ARGS` and returns its exit status,
// stdout and stderr.
func ktstrCorpus(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"corpus"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// seedTraces writes the first n seeds as traces into dir.
func seedTraces(t *testing.T, dir string, n int) ([]string, []corpus.Seed) {
	t.Helper()
	seeds := corpus.Seeds()[:n]
	var paths []string
	for _, s := range seeds {
		var buf bytes.Buffer
		require.NoError(t, s.WriteTrace(&buf))
		p := filepath.Join(dir, s.Name+".zst")
		require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
		paths = append(paths, p)
	}
	return paths, seeds
}

func TestCorpusExport(t *testing.T) {
	dir := t.TempDir()
	traces, seeds := seedTraces(t, dir, 3)
	out := filepath.Join(dir, "FuzzDispatch")

	// Flags after the traces, as in `ktstr corpus export TRACE... -o DIR`.
	code, stdout, stderr := ktstrCorpus(append([]string{"export"}, append(traces, "-o", out)...)...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Empty(t, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, len(traces))

	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, entries, len(traces))
	for i, line := range lines {
		path, rest, ok := strings.Cut(line, "\t")
		require.True(t, ok, line)
		assert.True(t, strings.HasPrefix(rest, traces[i]+" "), line)
		content, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, corpus.GoFuzzFileName(content), filepath.Base(path))
		in, err := corpus.UnmarshalGoFuzzFile(content)
		require.NoError(t, err)
		got := corpus.DecodeDispatchInput(in)
		want := seeds[i].Stream()
		assert.Equal(t, string(want.Data), string(got.Data))
		assert.Equal(t, want.Starts, got.Starts)
		assert.Equal(t, want.Times, got.Times)
	}

	// Flags first works too, and exporting again rewrites the same files.
	code, stdout2, stderr := ktstrCorpus(append([]string{"export", "-o", out}, traces...)...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, stdout, stdout2)
	entries, err = os.ReadDir(out)
	require.NoError(t, err)
	assert.Len(t, entries, len(traces))
}

func TestCorpusExportBadInput(t *testing.T) {
	dir := t.TempDir()
	traces, _ := seedTraces(t, dir, 1)
	good := traces[0]
	corrupt := filepath.Join(dir, "corrupt.zst")
	require.NoError(t, os.WriteFile(corrupt, []byte("KTSTRTRC but not zstd"), 0o644))
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	out := filepath.Join(dir, "out")

	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no subcommand", nil, "missing subcommand"},
		{"unknown subcommand", []string{"import"}, `unknown subcommand "import"`},
		{"missing -o", []string{"export", good}, "-o DIR is required"},
		{"no trace", []string{"export", "-o", out}, "no trace given"},
		{"missing file", []string{"export", "-o", out, filepath.Join(dir, "nope.zst")}, "no such file"},
		{"corrupt trace", []string{"export", "-o", out, good, corrupt}, "corrupt.zst: bad trace"},
		{"empty trace", []string{"export", "-o", out, file}, "bad trace"},
		{"over -max", []string{"export", "-o", out, "-max", "3", good}, "raise --max"},
		{"bad -max", []string{"export", "-o", out, "-max", "0", good}, "not a positive size"},
		{"-max in units", []string{"export", "-o", out, "-max", "2B", good}, "raise --max"},
		{"unknown flag", []string{"export", "-o", out, "--bogus", good}, "bogus"},
		{"unwritable -o", []string{"export", "-o", filepath.Join(file, "sub"), good}, "writable directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := ktstrCorpus(tc.args...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, tc.stderr)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one-line error: %q", stderr)
			assert.Empty(t, stdout)
		})
	}
	_, err := os.Stat(out)
	assert.ErrorIs(t, err, os.ErrNotExist, "bad input writes nothing")

	// Positive control: the good trace alone exports.
	code, _, stderr := ktstrCorpus("export", "-o", out, good)
	assert.Equal(t, ExitOK, code, stderr)
}

func TestCorpusHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"export", "-h"}} {
		code, _, stderr := ktstrCorpus(args...)
		assert.Equal(t, ExitOK, code)
		assert.Contains(t, stderr, "usage: ktstr corpus export")
	}
}
