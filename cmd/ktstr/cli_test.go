package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/replay"
)

func ktstr(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// writeSeedTrace writes a seed stream as a trace with an END record
// holding the outcome a live run would have produced (or a wrong one).
func writeSeedTrace(t *testing.T, dir, name string, seed corpus.Seed, tamper bool) string {
	t.Helper()
	var now int64
	s := dispatch.NewSession()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	require.NoError(t, err)
	w, err := capture.NewWriter(f, capture.Meta{Backend: "test", Scenario: seed.Name})
	require.NoError(t, err)
	for i, d := range seed.Deliveries {
		now = int64(i+1) * 1000
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, now, d))
		s.Feed(now, d, nil)
	}
	out := s.Finish()
	if tamper {
		out.Step = 77
	}
	js, err := json.Marshal(out)
	require.NoError(t, err)
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: now, Reason: "test", Outcome: js}))
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	return path
}

func seedNamed(t *testing.T, name string) corpus.Seed {
	for _, s := range corpus.Seeds() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no seed %s", name)
	return corpus.Seed{}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := writeSeedTrace(t, dir, "good.zst", seedNamed(t, "every-row"), false)
	bad := writeSeedTrace(t, dir, "bad.zst", seedNamed(t, "every-row"), true)
	garbage := filepath.Join(dir, "garbage.zst")
	require.NoError(t, os.WriteFile(garbage, []byte("not a trace at all"), 0o644))

	tests := []struct {
		name string
		args []string
		code int
		err  string // substring of stderr
	}{
		{"no args", nil, 2, "usage"},
		{"help", []string{"help"}, 0, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"replay no trace", []string{"replay"}, 2, "no trace given"},
		{"replay unknown flag", []string{"replay", "--frob", good}, 2, "flag provided but not defined"},
		{"replay bad chunking", []string{"replay", "--chunking", "halves", good}, 2, "chunking"},
		{"replay missing file", []string{"replay", filepath.Join(dir, "nope.zst")}, 2, "no such file"},
		{"replay garbage", []string{"replay", garbage}, 2, "bad trace"},
		{"replay good", []string{"replay", good}, 0, ""},
		{"replay mismatch", []string{"replay", bad}, 1, ""},
		{"replay good then garbage", []string{"replay", good, garbage}, 2, "bad trace"},
		{"replay mutate", []string{"replay", "--mutate", "64", good}, 0, ""},
		{"save-failures without mutate", []string{"replay", "--save-failures", dir, good}, 2, "needs --mutate"},
		{"trace no sub", []string{"trace"}, 2, "missing subcommand"},
		{"trace show garbage", []string{"trace", "show", garbage}, 2, "trace show"},
		{"trace import no raw", []string{"trace", "import", "-o", "x.zst"}, 2, "--raw"},
		{"trace import negative chunk", []string{"trace", "import", "--raw", good, "--chunk", "-1", "-o", "x"}, 2, "--chunk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := ktstr(tc.args...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.err)
			if tc.code == 2 && tc.name != "no args" {
				assert.LessOrEqual(t, strings.Count(stderr, "\n"), 1, "one-line error: %q", stderr)
			}
			assert.NotContains(t, stderr, "goroutine", "never a stack trace")
		})
	}
}

func TestReplayJSONLines(t *testing.T) {
	dir := t.TempDir()
	a := writeSeedTrace(t, dir, "a.zst", seedNamed(t, "every-row"), false)
	b := writeSeedTrace(t, dir, "b.zst", seedNamed(t, "forged-and-repeats"), false)
	code, stdout, stderr := ktstr("replay", "--json", a, b)
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 2)
	for i, l := range lines {
		var rep map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rep))
		assert.Equal(t, []string{a, b}[i], rep["trace"])
		assert.Equal(t, true, rep["match"])
		assert.Equal(t, []any{}, rep["violations"])
		assert.NotNil(t, rep["recorded"])
	}
}

func TestReplayHumanReport(t *testing.T) {
	dir := t.TempDir()
	bad := writeSeedTrace(t, dir, "bad.zst", seedNamed(t, "every-row"), true)
	code, stdout, _ := ktstr("replay", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "MISMATCH")
	assert.Contains(t, stdout, "step: got 1, want 77")
	assert.Contains(t, stdout, "invariants: 1–10 hold")
}

// TestImportThenReplay: a raw stream imported with --chunk replays to the
// same outcome as whole.
func TestImportThenReplay(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "tx.bin")
	require.NoError(t, os.WriteFile(raw, seedNamed(t, "every-row").Bytes(), 0o644))
	var outs []string
	for _, chunk := range []string{"0", "7"} {
		out := filepath.Join(dir, "imp"+chunk+".zst")
		code, _, stderr := ktstr("trace", "import", "--raw", raw, "--chunk", chunk, "-o", out)
		require.Equal(t, 0, code, stderr)
		code, stdout, stderr := ktstr("replay", "--json", out)
		require.Equal(t, 0, code, stderr)
		var rep replay.Report
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
		assert.Nil(t, rep.Recorded)
		js, _ := json.Marshal(rep.Outcome)
		outs = append(outs, string(js))
	}
	assert.Equal(t, outs[0], outs[1])
	// A missing raw file leaves no output behind.
	code, _, _ := ktstr("trace", "import", "--raw", filepath.Join(dir, "missing"), "-o", filepath.Join(dir, "never.zst"))
	assert.Equal(t, 2, code)
	assert.NoFileExists(t, filepath.Join(dir, "never.zst"))
}

func TestTraceShowAndStat(t *testing.T) {
	dir := t.TempDir()
	p := writeSeedTrace(t, dir, "t.zst", seedNamed(t, "forged-and-repeats"), false)
	code, stdout, stderr := ktstr("trace", "show", p)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "OFFSET")
	assert.Regexp(t, `SRDY\s+0\s+yes\s+boot-complete`, stdout)
	assert.Regexp(t, `SRDY\s+0\s+yes\s+reject: oneshot_repeat`, stdout)
	assert.Regexp(t, `SNRP\s+520\s+yes\s+reject: forged_tag`, stdout)
	assert.Regexp(t, `SCDX\s+1\s+no\s+reject: pad`, stdout)
	assert.Contains(t, stdout, "END at")

	code, stdout, stderr = ktstr("trace", "stat", p)
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `SRDY\s+2\s+0\s+1\s+1`, stdout)
	assert.Regexp(t, `oneshot_repeat\s+2`, stdout)
	assert.Regexp(t, `forged_tag\s+2`, stdout)
	assert.Regexp(t, `out_of_order\s+2`, stdout)
}

// TestSavedMutantTraceReplays: the file --save-failures writes is a
// trace `ktstr replay` reads. (A correct build has no failing mutant to
// save; cli_brokengate_test.go covers the whole path under the
// ktstr_brokengate tag.)
func TestSavedMutantTraceReplays(t *testing.T) {
	dir := t.TempDir()
	s := &replay.Stream{}
	s.Append(5, wire.AppendFrame(nil, wire.SysRdy, nil))
	p := filepath.Join(dir, "m.zst")
	require.NoError(t, saveMutant(p, s, capture.Meta{Backend: "mutant"}, outfile.Options{}))
	code, stdout, stderr := ktstr("replay", p)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "1 frames")
}

// TestErrorLineIsSafe: whatever an error holds (a file name in an os
// error, a trace's field quoted at length), the line printed is one
// line a terminal shows as it is, and bounded. Control: a plain message
// is printed unchanged.
func TestErrorLineIsSafe(t *testing.T) {
	for _, tc := range []struct{ name, msg, want string }{
		{"plain", "replay: run.zst: bad trace: x (check the file)", "replay: run.zst: bad trace: x (check the file)"},
		{"non-ASCII kept", "trace stat: café.zst: no such file", "trace stat: café.zst: no such file"},
		{"newline", "a\nb", "a b"},
		{"escape sequence and BEL", "open x\x1b]0;PWNED\x07\x1b[2K\rktstr: all good.zst", `open x\x1b]0;PWNED\a\x1b[2K\rktstr: all good.zst`},
		{"C1 and bidi", "x\u009b2J\u0085\u202e", `x\u009b2J\u0085\u202e`},
		{"invalid UTF-8", "bad\xff\xfe.zst", `bad\xff\xfe.zst`},
		{"a real U+FFFD", "a\uFFFDb", "a\uFFFDb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			assert.Equal(t, ExitUsage, report(&b, usagef("%s", tc.msg)))
			assert.Equal(t, "ktstr: "+tc.want+"\n", b.String())
		})
	}
	var b strings.Builder
	report(&b, usagef("trace stat: start_time %q", strings.Repeat("\x1b", 170000)))
	assert.Less(t, b.Len(), maxErrorLine+100, "bounded")
	assert.Contains(t, b.String(), "bytes more)")
	assert.Equal(t, 1, strings.Count(b.String(), "\n"))
}

// TestPrintableJSON: runs a terminal or a line splitter would act on
// come out as \u escapes and the JSON decodes to the same value.
// Control: printable text, ASCII and not, is left as it is.
func TestPrintableJSON(t *testing.T) {
	in := map[string]string{"end": "a\u009b2J \x7f \u0085 \u202e \u2028 \U000e0001 é 漢 <b>"}
	js, err := json.Marshal(in)
	require.NoError(t, err)
	out := printableJSON(js)
	for _, raw := range []string{"\u009b", "\x7f", "\u0085", "\u202e", "\u2028", "\U000e0001"} {
		assert.NotContains(t, string(out), raw)
	}
	assert.Contains(t, string(out), "é 漢", "printable runes stay")
	var back map[string]string
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, in, back)
}

// TestJSONOutputsArePrintable: a trace's file name with a direction
// override and a C1 control comes out of replay --json and corpus
// cover --json as \u escapes, and decodes back to the name. Control:
// the report is there, for the same file.
func TestJSONOutputsArePrintable(t *testing.T) {
	dir := t.TempDir()
	name := "run\u202e\u009b.zst"
	good := writeSeedTrace(t, dir, name, seedNamed(t, "every-row"), false)
	for _, args := range [][]string{{"replay", "--json", good}, {"corpus", "cover", "--json", good}} {
		r := runChild(t, childOpts{}, args...)
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.NotContains(t, r.stdout, "\u202e")
		assert.NotContains(t, r.stdout, "\u009b")
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &v), "one JSON object")
		assert.Contains(t, fmt.Sprint(v), name, "it decodes back to the name")
	}
}
