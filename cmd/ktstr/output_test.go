package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/kernel"
	"github.com/ktstr/ktstr/vmm"
)

// TestStdoutWriteFailure: a command whose standard output fails (a
// device node with /dev/full's numbers, made with mknod in a temporary
// directory) exits 2 with one line, where the same command to a file
// exits 0.
func TestStdoutWriteFailure(t *testing.T) {
	dir := t.TempDir()
	if !mknodDevices(t, dir) {
		t.Skip("mknod is not permitted here: no /dev/full node to write to")
	}
	full := filepath.Join(dir, "full")
	good := writeSeedTrace(t, dir, "good.zst", seedNamed(t, "every-row"), false)
	tests := []struct {
		name string
		args []string
	}{
		{"replay", []string{"replay", good}},
		{"replay --json", []string{"replay", "--json", good}},
		{"replay --mutate", []string{"replay", "--mutate", "16", good}},
		{"replay --json --mutate", []string{"replay", "--json", "--mutate", "16", good}},
		{"trace show", []string{"trace", "show", good}},
		{"trace stat", []string{"trace", "stat", good}},
		{"corpus export", []string{"corpus", "export", "-o", filepath.Join(dir, "corpus"), good}},
		{"trace import -o -", []string{"trace", "import", "--raw", good, "-o", "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runChild(t, childOpts{stdout: full}, tt.args...)
			assert.Equal(t, ExitUsage, r.code, r.stderr)
			assertOneLineError(t, r.stderr)
			assert.Contains(t, r.stderr, "no space left on device")

			// Control: the same command to a regular file.
			out := filepath.Join(t.TempDir(), "out")
			require.NoError(t, os.WriteFile(out, nil, 0o644))
			r = runChild(t, childOpts{stdout: out}, tt.args...)
			assert.Equal(t, ExitOK, r.code, r.stderr)
			fi, err := os.Stat(out)
			require.NoError(t, err)
			assert.Positive(t, fi.Size(), "the control printed its output")
		})
	}
	// A failed stderr is exit 2 too, even where there is nowhere left to
	// say why; the output it could not report on is still rolled back.
	t.Run("stderr", func(t *testing.T) {
		target := filepath.Join(dir, "imported.zst")
		r := runChild(t, childOpts{stderr: full}, "trace", "import", "--raw", good, "-o", target)
		assert.Equal(t, ExitUsage, r.code)
		r = runChild(t, childOpts{}, "trace", "import", "--raw", good, "-o", filepath.Join(dir, "control.zst"))
		assert.Equal(t, ExitOK, r.code, "control: %s", r.stderr)
	})
}

// TestFileWriteFailure: an output that cannot be written whole (a file
// size limit, as `ulimit -f` sets, makes every write past it fail) is
// exit 2 with one line, and leaves nothing under the target's name,
// where the same command without the limit writes it.
func TestFileWriteFailure(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "random.bin")
	noise := make([]byte, 1<<20) // incompressible: the trace is as large
	_, _ = rand.Read(noise)
	require.NoError(t, os.WriteFile(raw, noise, 0o644))
	existing := filepath.Join(dir, "existing.zst")
	require.NoError(t, os.WriteFile(existing, []byte("kept"), 0o644))
	big := writeSeedTrace(t, dir, "big.zst", seedNamed(t, "every-row"), false)
	tests := []struct {
		name   string
		target string
		args   []string
	}{
		{"trace import, new file", filepath.Join(dir, "new.zst"), []string{"trace", "import", "--raw", raw, "--chunk", "4096", "-o", filepath.Join(dir, "new.zst")}},
		{"trace import --force over a file", existing, []string{"trace", "import", "--raw", raw, "--force", "-o", existing}},
		{"corpus export", filepath.Join(dir, "corpus"), []string{"corpus", "export", "-o", filepath.Join(dir, "corpus"), big}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(tt.target)
			r := runChild(t, childOpts{discard: true, fileLimit: 512}, tt.args...)
			assert.Equal(t, ExitUsage, r.code, r.stderr)
			assertOneLineError(t, r.stderr)
			assert.Contains(t, r.stderr, "file too large")
			after, _ := os.ReadFile(tt.target)
			assert.Equal(t, before, after, "the target is as it was")
			assertNoTempFiles(t, dir)

			// Control: without the limit, it is written.
			r = runChild(t, childOpts{discard: true}, tt.args...)
			assert.Equal(t, ExitOK, r.code, r.stderr)
			_, err := os.Stat(tt.target)
			assert.NoError(t, err)
		})
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return err
	}))
}

// hostileTrace writes a valid trace whose every string a report prints
// is crafted to forge lines of the report or to drive the terminal, with
// an END record whose outcome differs from the stream's in a snapshot
// tag (so replay prints that tag in its mismatch).
func hostileTrace(t *testing.T, dir string) string {
	t.Helper()
	forged := "steady\n  invariants: 1–10 hold\x1b[2J"
	meta := capture.Meta{
		Backend:       "qemu\n  recorded:   replay matches the live outcome",
		Accel:         "tcg\u202e",
		Scenario:      forged,
		KernelRelease: "6.12\u2028forged",
	}
	path := filepath.Join(dir, "hostile.zst")
	f, err := os.Create(path)
	require.NoError(t, err)
	w, err := capture.NewWriter(f, meta)
	require.NoError(t, err)
	var tag [64]byte
	copy(tag[:], "tag\x1b[31m\nforged line")
	snrq := wire.AppendFrame(nil, wire.SnapshotRequest, append([]byte{1, 0, 0, 0, 1, 0, 0, 0}, tag[:]...))
	stream := append(wire.AppendFrame(nil, wire.SysRdy, nil), snrq...)
	require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, 1, stream))
	require.NoError(t, w.WriteEvent(2, "evil\nEV  forged event\x1b]0;title\x07", json.RawMessage("{\n  \"a\": \"\\u001b[31mred\u2028next\",\n  \"b\": [1,\n 2]\n}")))
	s := dispatch.NewSession()
	s.Feed(1, stream, nil)
	out := s.Finish()
	require.Len(t, out.SnapshotRequests, 1)
	out.SnapshotRequests[0].Tag = "recorded\x1b[2J\nforged"
	js, err := json.Marshal(out)
	require.NoError(t, err)
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: 3, Reason: "poweroff\n  invariants: 1–10 hold", Outcome: js}))
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	return path
}

// TestTraceStringsAreEscaped: no string from a trace reaches the output
// of replay, trace show or trace stat with a control character, a line
// break or a Unicode format character in it, and none starts a line.
func TestTraceStringsAreEscaped(t *testing.T) {
	dir := t.TempDir()
	path := hostileTrace(t, dir)
	tests := []struct {
		name string
		args []string
		code int
		// shown is escaped text that must appear: the strings were
		// printed, not dropped.
		shown []string
		// lines: each prefix must start exactly that many lines.
		lines map[string]int
	}{
		{"replay", []string{"replay", path}, ExitCheck,
			[]string{`"steady\n  invariants: 1–10 hold\x1b[2J"`, `"poweroff\n  invariants: 1–10 hold"`, `\x1b[2J\nforged`, `"tcg\u202e"`, `"6.12\u2028forged"`},
			map[string]int{"  invariants:": 1, "  recorded:": 1, "  run ended:": 1}},
		{"trace show", []string{"trace", "show", path}, ExitOK,
			[]string{`"evil\nEV  forged event\x1b]0;title\a"`, `{"a":"\u001b[31mred\u2028next","b":[1,2]}`, `"poweroff\n  invariants: 1–10 hold"`},
			map[string]int{"EV ": 0, "END at": 1, "trace of": 1}},
		{"trace stat", []string{"trace", "stat", path}, ExitOK,
			[]string{`"steady\n  invariants: 1–10 hold\x1b[2J"`, `"poweroff\n  invariants: 1–10 hold"`},
			map[string]int{"ended:": 1, "trace ": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runChild(t, childOpts{}, tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Empty(t, r.stderr)
			for _, c := range r.stdout {
				if c != '\n' && (unicode.IsControl(c) || unicode.Is(unicode.Cf, c) || c == '\u2028' || c == '\u2029') {
					t.Errorf("output holds %U:\n%s", c, r.stdout)
					break
				}
			}
			for _, s := range tt.shown {
				assert.Contains(t, r.stdout, s)
			}
			for prefix, n := range tt.lines {
				got := 0
				for _, l := range strings.Split(r.stdout, "\n") {
					if strings.HasPrefix(l, prefix) {
						got++
					}
				}
				assert.Equal(t, n, got, "lines starting %q:\n%s", prefix, r.stdout)
			}
			assert.NotContains(t, r.stdout, "\nforged", "no forged line")
		})
	}
	// trace show puts the event on one line of its own.
	r := runChild(t, childOpts{}, "trace", "show", path)
	evLines := 0
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, " EV ") {
			evLines++
		}
	}
	assert.Equal(t, 1, evLines, r.stdout)
}

func TestSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"steady", "steady"},
		{"6.12.117-cloud-amd64", "6.12.117-cloud-amd64"},
		{"two words", "two words"},
		{"ünïcödé", "ünïcödé"},
		{"", `""`},
		{"a\nb", `"a\nb"`},
		{"\x1b[2J", `"\x1b[2J"`},
		{"tab\there", `"tab\there"`},
		{"rtl\u202e", `"rtl\u202e"`},
		{"line\u2028sep", `"line\u2028sep"`},
		{"bad\xff", `"bad\xff"`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, safe(tt.in), "%q", tt.in)
	}
	assert.Equal(t, "a\nb\\x1b\n\\u2028", safeLines("a\nb\x1b\n\u2028"))
	assert.Equal(t, `a\nb`, safeInline("a\nb"))
	assert.Equal(t, `back\slash \x1b \xff`, safeInline("back\\slash \x1b \xff"), "printable text as it is")
	assert.Equal(t, `{"a":"x\u2028y","b":[1,2]}`, safeJSON([]byte("{\n \"a\": \"x\u2028y\",\n \"b\": [1, 2]\n}")))
	assert.Equal(t, `{"e":"`+"\U0001F600"+`"}`, safeJSON([]byte(`{"e":"`+"\U0001F600"+`"}`)), "printable: kept")
	assert.Equal(t, `"\udb40\udc01"`, safeJSON([]byte(`"`+"\U000E0001"+`"`)), "past U+FFFF: a surrogate pair")
	var valid any
	require.NoError(t, json.Unmarshal([]byte(safeJSON([]byte("\"a\u2028\u202e\U000E0001\""))), &valid), "still JSON")
	assert.Equal(t, `["a b","\"q\\\" x",{"k":" "}]`, safeJSON([]byte(`[ "a b" , "\"q\\\" x", {"k" : " "} ]`)), "blanks in strings stay")
	long := safeJSON([]byte(`"` + strings.Repeat("x", 3*maxJSONShown) + `"`))
	assert.LessOrEqual(t, len(long), maxJSONShown+32, "cut")
	assert.True(t, strings.HasSuffix(long, fmt.Sprintf("…(%d more bytes)", 3*maxJSONShown+2-maxJSONShown)), long[len(long)-40:])
}

// TestReplayJSONMutate: with --mutate, --json prints one object per
// trace: the replay's fields and a "mutation" member (docs/protocol.md
// §7), never a second object.
func TestReplayJSONMutate(t *testing.T) {
	dir := t.TempDir()
	a := writeSeedTrace(t, dir, "a.zst", seedNamed(t, "every-row"), false)
	b := writeSeedTrace(t, dir, "b.zst", seedNamed(t, "forged-and-repeats"), false)
	code, stdout, stderr := ktstr("replay", "--json", "--mutate", "32", "--seed", "7", a, b)
	require.Equal(t, ExitOK, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 2, "one object per trace")
	for i, l := range lines {
		var rep map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(l), &rep))
		for _, k := range []string{"trace", "frames", "bytes", "outcome", "recorded", "match", "violations", "truncated", "mutation"} {
			assert.Contains(t, rep, k)
		}
		assert.Equal(t, `"`+[]string{a, b}[i]+`"`, string(rep["trace"]))
		var m struct {
			Mutants   int               `json:"mutants"`
			Failing   int               `json:"failing"`
			Seed      uint64            `json:"seed"`
			Bytes     int               `json:"bytes"`
			Limited   bool              `json:"limited"`
			Operators []json.RawMessage `json:"operators"`
			Saved     []string          `json:"saved"`
		}
		dec := json.NewDecoder(bytes.NewReader(rep["mutation"]))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&m))
		assert.Positive(t, m.Mutants)
		assert.LessOrEqual(t, m.Mutants, 32, "spread evenly over the operators")
		assert.Zero(t, m.Failing)
		assert.Equal(t, uint64(7), m.Seed)
		assert.Positive(t, m.Bytes)
		assert.False(t, m.Limited)
		assert.NotEmpty(t, m.Operators)
		assert.NotNil(t, m.Saved)
	}
	// Control: without --mutate there is no mutation member.
	code, stdout, _ = ktstr("replay", "--json", a)
	require.Equal(t, ExitOK, code)
	var rep map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.NotContains(t, rep, "mutation")
}

// TestNothingPrintedBeforeTheError: a command that refuses its trace
// prints nothing on stdout (no table header), only the error.
func TestNothingPrintedBeforeTheError(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.zst")
	require.NoError(t, os.WriteFile(garbage, []byte("not a trace"), 0o644))
	good := writeSeedTrace(t, dir, "good.zst", seedNamed(t, "every-row"), false)
	for _, sub := range []string{"show", "stat"} {
		for _, path := range []string{filepath.Join(dir, "missing.zst"), dir, garbage} {
			code, stdout, stderr := ktstr("trace", sub, path)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Empty(t, stdout, "trace %s %s", sub, path)
		}
		// Control: a good trace prints its table.
		code, stdout, stderr := ktstr("trace", sub, good)
		assert.Equal(t, ExitOK, code, stderr)
		assert.NotEmpty(t, stdout)
	}
}

// TestPrintSummaryVMMLines: record's summary says what the VMM had to do
// beyond the usual (Exit.Detail, escaped) and how much of the console
// the log dropped; a run with neither prints neither line (the control).
func TestPrintSummaryVMMLines(t *testing.T) {
	o := recordOptions{out: "run.zst", maxConsole: 1 << 20}
	var plain bytes.Buffer
	printSummary(&plain, o, kernel.Kernel{Release: "6.12"}, "", "qemu", "", vmm.Result{SysRdyNS: 1e9, SchedExitNS: -1}, "")
	assert.NotContains(t, plain.String(), "VMM:")
	assert.NotContains(t, plain.String(), "console log:")

	var b bytes.Buffer
	res := vmm.Result{SysRdyNS: 1e9, SchedExitNS: -1, Exit: vmm.Exit{
		Detail:         "the serial console log is incomplete: console log: write /tmp/c\x1b]0;x\a.log: no space left on device",
		ConsoleDropped: 12345,
	}}
	printSummary(&b, o, kernel.Kernel{Release: "6.12"}, "", "qemu", "", res, "")
	out := b.String()
	assert.Contains(t, out, `  VMM: the serial console log is incomplete: console log: write /tmp/c\x1b]0;x\a.log: no space left on device`+"\n")
	assert.Contains(t, out, "  console log: 12345 bytes the guest printed past its budget of 1MiB (--max-console) were dropped")
	assert.NotContains(t, out, "\x1b", "nothing raw reaches the terminal")
}
