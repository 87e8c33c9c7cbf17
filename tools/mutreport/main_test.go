package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sample is a gremlins v0.6 report cut down to the fields mutreport
// reads, plus some it ignores.
const sample = `{"go_module":"github.com/ktstr/ktstr","test_efficacy":75,"files":[
 {"file_name":"gates.go","mutations":[
  {"type":"CONDITIONALS_NEGATION","status":"KILLED","line":10,"column":5},
  {"type":"CONDITIONALS_BOUNDARY","status":"LIVED","line":12,"column":9},
  {"type":"ARITHMETIC_BASE","status":"KILLED","line":3,"column":1},
  {"type":"INVERT_LOGICAL","status":"NOT VIABLE","line":4,"column":1}]},
 {"file_name":"assembler.go","mutations":[
  {"type":"INVERT_BITWISE","status":"NOT COVERED","line":29,"column":22},
  {"type":"CONDITIONALS_BOUNDARY","status":"LIVED","line":9,"column":40},
  {"type":"INVERT_LOGICAL","status":"KILLED","line":66,"column":47},
  {"type":"INVERT_LOGICAL","status":"TIMED OUT","line":70,"column":2}]}]}`

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// inRepo makes the working directory a fresh tree holding the given Go
// sources (mutreport reads the mutated files from the repository root).
func inRepo(t *testing.T, sources map[string]string) {
	t.Helper()
	root := t.TempDir()
	for name, src := range sources {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
	}
	t.Chdir(root)
}

// sampleSources are the files sample names; no mutant of sample sits on
// a place that cannot compile.
var sampleSources = map[string]string{
	"dispatch/gates.go":     "package dispatch\n",
	"dispatch/assembler.go": "package dispatch\n",
}

func TestRunPrintsFigureAndSurvivors(t *testing.T) {
	p := write(t, "r.json", sample)
	inRepo(t, sampleSources)
	var out bytes.Buffer
	ok, err := run([]string{"dispatch=" + p}, 0, &out)
	require.NoError(t, err)
	assert.True(t, ok)
	s := out.String()
	for _, want := range []string{
		"dispatch (" + p + ")",
		"killed           3\n",
		"lived            2\n",
		"timed out        1\n",
		"not covered      1\n",
		"not viable       1\n",
		"efficacy         60.0%", // 3 / (3 + 2)
		"mutant coverage  83.3%", // 5 / (5 + 1)
		"killed share     57.1%", // (3 + 1) / (3 + 1 + 2 + 1)
		// sorted by file, then by line and column numerically
		"surviving mutants (3):\n" +
			"    LIVED        CONDITIONALS_BOUNDARY    dispatch/assembler.go:9:40\n" +
			"    NOT COVERED  INVERT_BITWISE           dispatch/assembler.go:29:22\n" +
			"    LIVED        CONDITIONALS_BOUNDARY    dispatch/gates.go:12:9\n",
	} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "gates.go:10:5", "killed mutants are not listed")
	assert.NotContains(t, s, "assembler.go:70:2", "timed-out mutants are detected, not listed")
}

func TestRunChecksTheTarget(t *testing.T) {
	p := write(t, "r.json", sample)
	inRepo(t, map[string]string{"dispatch/gates.go": "package dispatch\n", "dispatch/assembler.go": "package dispatch\n", "dispatch/wire/payload.go": "package wire\n"})
	clean := write(t, "clean.json", `{"go_module":"m","files":[{"file_name":"payload.go","mutations":[
		{"type":"ARITHMETIC_BASE","status":"KILLED","line":1,"column":1}]}]}`)
	tests := []struct {
		target float64
		args   []string
		want   bool
	}{
		{57, []string{"dispatch=" + p}, true},
		{58, []string{"dispatch=" + p}, false},
		{90, []string{"dispatch/wire=" + clean}, true},
		{90, []string{"dispatch/wire=" + clean, "dispatch=" + p}, false},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		ok, err := run(tc.args, tc.target, &out)
		require.NoError(t, err)
		assert.Equal(t, tc.want, ok, "target %v, %v", tc.target, tc.args)
		assert.Equal(t, !tc.want, bytes.Contains(out.Bytes(), []byte("BELOW TARGET")))
	}
}

// TestNotCompilingIsNotViable: the mutants gremlins v0.6.0 reports
// KILLED although they only broke the build — &x → |x and "0" + s →
// "0" - s — count as not viable; the other mutants on those lines keep
// their status.
func TestNotCompilingIsNotViable(t *testing.T) {
	inRepo(t, map[string]string{"dispatch/wire/tag.go": `package wire

func f(x int, s string) (*int, string, int) {
	return &x, "0" + s, x + 1
}
`})
	p := write(t, "wire.json", `{"go_module":"m","files":[{"file_name":"tag.go","mutations":[
		{"type":"INVERT_BITWISE","status":"KILLED","line":4,"column":9},
		{"type":"ARITHMETIC_BASE","status":"KILLED","line":4,"column":17},
		{"type":"ARITHMETIC_BASE","status":"LIVED","line":4,"column":24},
		{"type":"CONDITIONALS_NEGATION","status":"KILLED","line":4,"column":9}]}]}`)
	var out bytes.Buffer
	_, err := run([]string{"dispatch/wire=" + p}, 0, &out)
	require.NoError(t, err)
	s := out.String()
	assert.Contains(t, s, "killed           1\n")
	assert.Contains(t, s, "lived            1\n")
	assert.Contains(t, s, "not viable       2\n")
	assert.Contains(t, s, "ARITHMETIC_BASE          dispatch/wire/tag.go:4:24")
}

func TestRunRejectsBadInput(t *testing.T) {
	inRepo(t, sampleSources)
	dir := t.TempDir()
	bad := write(t, "bad.json", "not json")
	other := write(t, "other.json", `{"files":[]}`)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no report given"},
		{[]string{bad}, "not DIR=REPORT.json"},
		{[]string{"=" + bad}, "not DIR=REPORT.json"},
		{[]string{"dispatch=" + bad}, "not a gremlins JSON report"},
		{[]string{"dispatch=" + other}, "no go_module"},
		{[]string{"dispatch=" + filepath.Join(dir, "missing.json")}, "make mutation"},
		{[]string{"elsewhere=" + write(t, "r.json", sample)}, "repository root"},
	}
	for _, tc := range tests {
		_, err := run(tc.args, 0, &bytes.Buffer{})
		assert.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}
