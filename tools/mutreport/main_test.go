package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	ok, err := run([]string{"dispatch=" + p}, options{}, &out)
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
		ok, err := run(tc.args, options{target: tc.target}, &out)
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
	_, err := run([]string{"dispatch/wire=" + p}, options{}, &out)
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
		_, err := run(tc.args, options{}, &bytes.Buffer{})
		assert.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}

func TestMutate(t *testing.T) {
	src := "package p\n\nfunc f(a, b int) bool {\n\ta += b\n\tfor a < b {\n\t\tbreak\n\t}\n\treturn a == b && b <= a\n}\n"
	tests := []struct {
		line, col int
		mutator   string
		want      string // the mutated line
	}{
		{4, 4, "REMOVE_SELF_ASSIGNMENTS", "\ta = b"},
		{4, 4, "INVERT_ASSIGNMENTS", "\ta -= b"},
		{5, 8, "CONDITIONALS_BOUNDARY", "\tfor a <= b {"},
		{5, 8, "CONDITIONALS_NEGATION", "\tfor a >= b {"},
		{6, 3, "INVERT_LOOPCTRL", "\t\tcontinue"},
		{8, 11, "CONDITIONALS_NEGATION", "\treturn a != b && b <= a"},
		{8, 16, "INVERT_LOGICAL", "\treturn a == b || b <= a"},
		{8, 21, "CONDITIONALS_BOUNDARY", "\treturn a == b && b < a"},
	}
	for _, tc := range tests {
		got, err := mutate([]byte(src), tc.line, tc.col, tc.mutator)
		require.NoError(t, err, "%d:%d %s", tc.line, tc.col, tc.mutator)
		lines := strings.Split(string(got), "\n")
		assert.Equal(t, tc.want, lines[tc.line-1], "%d:%d %s", tc.line, tc.col, tc.mutator)
		lines[tc.line-1] = strings.Split(src, "\n")[tc.line-1]
		assert.Equal(t, src, strings.Join(lines, "\n"), "only that line changes")
	}
	_, err := mutate([]byte(src), 4, 4, "INVERT_LOGICAL")
	assert.ErrorContains(t, err, "does not apply")
	_, err = mutate([]byte(src), 4, 5, "INVERT_ASSIGNMENTS")
	assert.ErrorContains(t, err, "no token at 4:5")
}

// TestRerun runs not-covered mutants of a small module for real: one its
// test kills, one equivalent mutant, one endless loop.
func TestRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test on a scratch module")
	}
	inRepo(t, map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.26\n",
		"p/p.go": `package p

// K is eight.
const K = 1 << 3

// Add adds.
func Add(a, b int) int { return a + b }

// Max is the larger.
func Max(a, b int) int {
	if a >= b {
		return a
	}
	return b
}

// Spin counts n down.
func Spin(n int) int {
	for n > 0 {
		n--
	}
	return n
}
`,
		"p/p_test.go": `package p

import "testing"

func TestP(t *testing.T) {
	if K != 8 || Add(2, 3) != 5 || Max(1, 2) != 2 || Max(2, 1) != 2 || Spin(3) != 0 {
		t.Fatal("wrong")
	}
}
`,
	})
	rep := write(t, "p.json", `{"go_module":"example.com/m","files":[{"file_name":"p.go","mutations":[
		{"type":"INVERT_BITWISE","status":"NOT COVERED","line":4,"column":13},
		{"type":"ARITHMETIC_BASE","status":"KILLED","line":7,"column":35},
		{"type":"CONDITIONALS_BOUNDARY","status":"NOT COVERED","line":11,"column":7},
		{"type":"INCREMENT_DECREMENT","status":"NOT COVERED","line":20,"column":4}]}]}`)
	var out bytes.Buffer
	_, err := run([]string{"p=" + rep}, options{rerun: map[string]bool{notCovered: true}, timeout: 5 * time.Second}, &out)
	require.NoError(t, err)
	s := out.String()
	for _, want := range []string{
		"rerun INVERT_BITWISE           p/p.go:4:13  NOT COVERED → KILLED  TestP\n",
		"rerun CONDITIONALS_BOUNDARY    p/p.go:11:7  NOT COVERED → LIVED  every test passed\n",
		"rerun INCREMENT_DECREMENT      p/p.go:20:4  NOT COVERED → TIMED OUT  the tests ran past 5s\n",
		"killed           2\n",
		"lived            1\n",
		"timed out        1\n",
		"not covered      0\n",
		"    LIVED        CONDITIONALS_BOUNDARY    p/p.go:11:7\n",
	} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "rerun ARITHMETIC_BASE", "only the statuses asked for are run again")
	src, err := os.ReadFile("p/p.go")
	require.NoError(t, err)
	assert.Contains(t, string(src), "1 << 3", "the tree is not touched")
}
