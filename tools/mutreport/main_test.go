package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `{"go_module":"github.com/ktstr/ktstr","files":[
 {"file_name":"gates.go","mutations":[
  {"type":"CONDITIONALS_NEGATION","status":"KILLED","line":10,"column":5},
  {"type":"CONDITIONALS_BOUNDARY","status":"LIVED","line":12,"column":9},
  {"type":"ARITHMETIC_BASE","status":"KILLED","line":3,"column":1}]},
 {"file_name":"wire/wire.go","mutations":[
  {"type":"INVERT_BITWISE","status":"NOT COVERED","line":29,"column":22},
  {"type":"INVERT_LOGICAL","status":"KILLED","line":66,"column":47},
  {"type":"INVERT_LOGICAL","status":"TIMED OUT","line":70,"column":2}]}]}`

func TestRunPrintsFigureAndSurvivors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	require.NoError(t, os.WriteFile(path, []byte(sample), 0o644))
	var out bytes.Buffer
	require.NoError(t, run(path, &out))
	s := out.String()
	assert.Contains(t, s, "KILLED       3")
	assert.Contains(t, s, "LIVED        1")
	assert.Contains(t, s, "NOT COVERED  1")
	assert.Contains(t, s, "TIMED OUT    1")
	assert.Contains(t, s, "efficacy     80.0%")
	assert.Contains(t, s, "killed share 66.7%")
	assert.Contains(t, s, "CONDITIONALS_BOUNDARY        gates.go:12:9")
	assert.Contains(t, s, "INVERT_BITWISE               wire/wire.go:29:22")
	assert.NotContains(t, s, "gates.go:10:5", "killed mutants are not listed")
}

func TestRunRejectsBadReports(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("not json"), 0o644))
	assert.ErrorContains(t, run(bad, &bytes.Buffer{}), "not a gremlins JSON report")
	assert.ErrorContains(t, run(filepath.Join(dir, "missing.json"), &bytes.Buffer{}), "make mutation")
}
