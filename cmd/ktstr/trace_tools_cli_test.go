package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/internal/outfile"
)

// tt runs ktstr with args and returns its exit status, stdout and stderr.
func tt(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return code, o.String(), e.String()
}

const ttHostile = "../../corpus/real/hostile.zst"
const ttSteady = "../../corpus/real/steady.zst"

// ttTrace writes a trace of the given TX deliveries (1 µs apart) with an
// END record holding their outcome.
func ttTrace(t *testing.T, dir, name string, deliveries ...[]byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	require.NoError(t, err)
	w, err := capture.NewWriter(f, capture.Meta{Backend: "test", Scenario: name})
	require.NoError(t, err)
	s := dispatch.NewSession()
	for i, d := range deliveries {
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(i+1)*1000, d))
		s.Feed(int64(i+1)*1000, d, nil)
	}
	js, err := json.Marshal(s.Finish())
	require.NoError(t, err)
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: int64(len(deliveries)+1) * 1000, Reason: "test", Outcome: js}))
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	return path
}

// ttBadTraces writes traces that are damaged or cut short in the ways the
// reader tells apart, and returns them by name.
func ttBadTraces(t *testing.T, dir string) map[string]string {
	t.Helper()
	good := ttTrace(t, dir, "good.zst", wire.AppendFrame(nil, wire.SysRdy, nil), wire.AppendFrame(nil, wire.Stimulus, []byte("hello")))
	data, err := os.ReadFile(good)
	require.NoError(t, err)
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	header := func(version uint32, meta string) []byte {
		b := []byte(capture.Magic)
		b = binary.LittleEndian.AppendUint32(b, version)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
		return append(b, meta...)
	}
	end := func(outcome string) []byte {
		body := binary.LittleEndian.AppendUint64(nil, 5)
		body = binary.LittleEndian.AppendUint32(body, 0)
		body = binary.LittleEndian.AppendUint16(body, 1)
		body = append(append(body, 'x'), outcome...)
		return append(binary.LittleEndian.AppendUint32([]byte{byte(capture.KindEnd)}, uint32(len(body))), body...)
	}
	// A trace cut inside its last zstd frame, after a first frame that
	// holds the SRDY.
	var cut bytes.Buffer
	w, err := capture.NewWriter(&cut, capture.Meta{})
	require.NoError(t, err)
	require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, 1000, wire.AppendFrame(nil, wire.SysRdy, nil)))
	require.NoError(t, w.Flush())
	require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, 2000, wire.AppendFrame(nil, wire.Stimulus, []byte("hello"))))
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: 3000, Reason: "x"}))
	require.NoError(t, w.Close())
	flipped := bytes.Clone(data)
	flipped[len(flipped)-6] ^= 0x55
	files := map[string][]byte{
		"garbage":          []byte("not a trace at all"),
		"empty":            nil,
		"zstd, not trace":  enc.EncodeAll([]byte("hello, world: this is no trace"), nil),
		"version 2":        enc.EncodeAll(header(2, "{}"), nil),
		"meta not object":  enc.EncodeAll(header(1, "[1]"), nil),
		"end array":        enc.EncodeAll(append(header(1, "{}"), end("[1,2,3]")...), nil),
		"end not outcome":  enc.EncodeAll(append(header(1, "{}"), end(`{"killed":7}`)...), nil),
		"checksum flipped": flipped,
		"truncated":        cut.Bytes()[:cut.Len()-5],
	}
	out := map[string]string{}
	for name, b := range files {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".zst")
		require.NoError(t, os.WriteFile(p, b, 0o644))
		out[name] = p
	}
	out["directory"] = dir
	out["missing"] = filepath.Join(dir, "missing.zst")
	return out
}

// ttAfterCommand drops "ktstr: CMD: " from each stderr line, leaving what
// every command says alike about the same input.
func ttAfterCommand(stderr, cmd string) string {
	return strings.ReplaceAll(stderr, "ktstr: "+cmd+": ", "")
}

// TestTraceToolsTakeBadTracesAsReplayDoes: every new command, given a
// damaged, cut-short or missing trace, exits with replay's status and
// says what replay says, in one line, never a panic.
func TestTraceToolsTakeBadTracesAsReplayDoes(t *testing.T) {
	dir := t.TempDir()
	good := ttTrace(t, dir, "ok.zst", wire.AppendFrame(nil, wire.SysRdy, nil))
	for name, path := range ttBadTraces(t, dir) {
		rcode, _, rerr := tt("replay", path)
		require.NotContains(t, rerr, "panic")
		cmds := []struct {
			name string
			args []string
		}{
			{"trace timeline", []string{"trace", "timeline", path, "-o", filepath.Join(t.TempDir(), "tl")}},
			{"trace diff", []string{"trace", "diff", path, good}},
			{"trace minimize", []string{"trace", "minimize", path, "--until", "sys_rdy", "-o", filepath.Join(t.TempDir(), "m.zst")}},
			{"corpus cover", []string{"corpus", "cover", path}},
		}
		for _, c := range cmds {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				code, _, stderr := tt(c.args...)
				assert.NotContains(t, stderr, "panic")
				assert.NotContains(t, stderr, "goroutine")
				switch {
				case name == "truncated":
					// Read up to the cut, said once; the answer is the command's own.
					assert.Equal(t, ttAfterCommand(rerr, "replay"), ttAfterCommand(stderr, c.name))
					// Its readable prefix is one SRDY: the minimize property
					// holds; diff finds the same frames, but a run cut
					// short did not end as ok.zst did.
					if c.name == "trace diff" {
						assert.Equal(t, 1, code, stderr)
					} else {
						assert.Equal(t, 0, code, stderr)
					}
				case name == "directory" && c.name == "corpus cover":
					// A directory is a corpus to cover, not an error.
					assert.Equal(t, 2, code, "it holds the bad traces: %s", stderr)
				case name == "missing" && c.name == "corpus cover":
					assert.Equal(t, 2, code)
					assert.Contains(t, stderr, "no such file or directory")
				default:
					assert.Equal(t, rcode, code, "replay: %s; %s: %s", rerr, c.name, stderr)
					assert.Equal(t, ttAfterCommand(rerr, "replay"), ttAfterCommand(stderr, c.name))
					assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
				}
			})
		}
	}
	// The control: the good trace is taken by all of them.
	code, _, stderr := tt("trace", "timeline", good, "-o", filepath.Join(dir, "good"))
	assert.Equal(t, 0, code, stderr)
	code, _, stderr = tt("trace", "diff", good, good)
	assert.Equal(t, 0, code, stderr)
	code, _, stderr = tt("corpus", "cover", good)
	assert.Equal(t, 0, code, stderr)
}

// TestTraceToolsUsageErrors: bad flags, arguments, properties and
// outputs are one line on stderr and exit 2, writing nothing.
func TestTraceToolsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.zst")
	require.NoError(t, os.WriteFile(existing, []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tl.json"), []byte("x"), 0o644))
	out := filepath.Join(dir, "out.zst")
	tests := []struct {
		name string
		args []string
		want string // substring of stderr
	}{
		{"minimize no args", []string{"trace", "minimize"}, "exactly one trace"},
		{"minimize two traces", []string{"trace", "minimize", ttHostile, ttSteady, "--until", "killed", "-o", out}, "exactly one trace"},
		{"minimize no until", []string{"trace", "minimize", ttHostile, "-o", out}, "--until PROPERTY is required"},
		{"minimize no -o", []string{"trace", "minimize", ttHostile, "--until", "killed"}, "-o MIN.zst is required"},
		{"minimize bad property", []string{"trace", "minimize", ttHostile, "--until", "reject=nope", "-o", out}, "unknown reason"},
		{"minimize h2g tag", []string{"trace", "minimize", ttHostile, "--until", "tag=SNRP", "-o", out}, "never accepted on TX"},
		{"minimize unknown flag", []string{"trace", "minimize", "--frobnicate", ttHostile}, "flag provided but not defined"},
		{"minimize bad max-tries", []string{"trace", "minimize", ttHostile, "--until", "killed", "-o", out, "--max-tries", "0"}, "--max-tries"},
		{"minimize bad max", []string{"trace", "minimize", ttHostile, "--until", "killed", "-o", out, "--max", "lots"}, "not a positive size"},
		{"minimize too long", []string{"trace", "minimize", ttHostile, "--until", "reject=crc", "-o", out, "--max", "1KiB"}, "raise --max"},
		{"minimize existing -o", []string{"trace", "minimize", ttHostile, "--until", "reject=crc", "-o", existing}, "--force"},
		{"minimize -o input", []string{"trace", "minimize", ttHostile, "--until", "reject=crc", "-o", ttHostile, "--force"}, "same file as an input"},
		{"minimize -o dir", []string{"trace", "minimize", ttHostile, "--until", "reject=crc", "-o", dir}, "not a regular file"},
		{"minimize -o stdout", []string{"trace", "minimize", ttHostile, "--until", "reject=crc", "-o", "-"}, "standard output"},
		{"diff one trace", []string{"trace", "diff", ttHostile}, "exactly two traces"},
		{"diff three", []string{"trace", "diff", ttHostile, ttHostile, ttHostile}, "exactly two traces"},
		{"diff bad context", []string{"trace", "diff", "--context", "0", ttHostile, ttHostile}, "--context"},
		{"diff missing B", []string{"trace", "diff", ttHostile, filepath.Join(dir, "nope.zst")}, "no such file"},
		{"timeline no -o", []string{"trace", "timeline", ttHostile}, "-o OUT is required"},
		{"timeline -o -", []string{"trace", "timeline", ttHostile, "-o", "-"}, "two files"},
		{"timeline existing", []string{"trace", "timeline", ttHostile, "-o", filepath.Join(dir, "tl")}, "--force"},
		{"timeline no dir", []string{"trace", "timeline", ttHostile, "-o", filepath.Join(dir, "no", "such", "tl")}, "directory"},
		{"timeline two traces", []string{"trace", "timeline", ttHostile, ttSteady, "-o", filepath.Join(dir, "x")}, "exactly one trace"},
		{"cover nothing", []string{"corpus", "cover"}, "no input given"},
		{"cover missing", []string{"corpus", "cover", filepath.Join(dir, "nope")}, "no such file or directory"},
		{"cover device", []string{"corpus", "cover", "/dev/null"}, "not a file"},
		{"cover other target", []string{"corpus", "cover", "../../fuzz/testdata/fuzz/FuzzAssembler"}, "FuzzAssembler"},
		{"cover bad flag", []string{"corpus", "cover", "--nope", ttSteady}, "flag provided but not defined"},
		{"trace unknown sub", []string{"trace", "minimise", ttHostile}, "unknown subcommand"},
		{"corpus unknown sub", []string{"corpus", "covers"}, "export or cover"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := tt(tc.args...)
			assert.Equal(t, 2, code, "stderr: %s", stderr)
			assert.Contains(t, stderr, tc.want)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.NotContains(t, stderr, "panic")
			assert.Empty(t, stdout)
		})
	}
	_, err := os.Stat(out)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing was written")
	b, err := os.ReadFile(existing)
	require.NoError(t, err)
	assert.Equal(t, "x", string(b), "the existing file is untouched")
}

// TestTraceMinimizeCommand: minimizing the hostile run to one reject
// reason writes a one-frame trace that `ktstr replay` replays with the
// reason, with the metadata noted; a trace that does not show the
// property exits 1 and writes nothing.
func TestTraceMinimizeCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "min.zst")
	code, stdout, stderr := tt("trace", "minimize", ttHostile, "--until", "reject=forged_tag", "-o", out)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "before: 57 deliveries, 508 frames, 21005 bytes")
	assert.Contains(t, stdout, "after:  1 deliveries, 1 frames")
	assert.Contains(t, stdout, "1-minimal")

	code, stdout, stderr = tt("replay", "--json", out)
	require.Equal(t, 0, code, stderr)
	var rep struct {
		Frames  int64            `json:"frames"`
		Outcome dispatch.Outcome `json:"outcome"`
		Match   bool             `json:"match"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.Equal(t, int64(1), rep.Frames)
	assert.Equal(t, uint64(1), rep.Outcome.Rejected.ForgedTag)
	assert.True(t, rep.Match, "no recorded outcome left to mismatch")

	f, err := os.Open(out)
	require.NoError(t, err)
	r, err := capture.NewReader(f)
	require.NoError(t, err)
	meta := r.Meta()
	f.Close()
	assert.Equal(t, "hostile", meta.Scenario, "the metadata is kept")
	assert.Equal(t, "reject=forged_tag", meta.Extra["minimized_until"])
	assert.Equal(t, ttHostile, meta.Extra["minimized_from"])

	code, stdout, stderr = tt("trace", "minimize", ttHostile, "--until", "reject=crc", "-o", filepath.Join(dir, "j.zst"), "--json")
	require.Equal(t, 0, code, stderr)
	var js struct {
		Result struct {
			Before, After struct{ Frames int64 }
			Tries         int
			Minimal       bool
		}
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &js))
	assert.Equal(t, int64(508), js.Result.Before.Frames)
	assert.Equal(t, int64(1), js.Result.After.Frames)
	assert.Positive(t, js.Result.Tries)
	assert.True(t, js.Result.Minimal)

	none := filepath.Join(dir, "none.zst")
	code, _, stderr = tt("trace", "minimize", ttSteady, "--until", "killed", "-o", none)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "does not show killed: no SCDX was accepted")
	_, err = os.Stat(none)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestTraceDiffCommand: a run against itself exits 0, two runs exit 1
// naming the first divergent frame and the outcome fields that differ.
func TestTraceDiffCommand(t *testing.T) {
	code, stdout, stderr := tt("trace", "diff", ttSteady, ttSteady)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "equal:")

	code, stdout, stderr = tt("trace", "diff", ttSteady, ttHostile)
	require.Equal(t, 1, code, stderr)
	assert.Contains(t, stdout, "first divergence at TX frame")
	assert.Contains(t, stdout, "outcome fields that differ:")
	assert.Contains(t, stdout, "> #")

	code, stdout, _ = tt("trace", "diff", "--json", ttSteady, ttHostile)
	require.Equal(t, 1, code)
	var d struct {
		Equal      bool `json:"equal"`
		Divergence *struct {
			Index int64 `json:"index"`
		} `json:"divergence"`
		Outcome []struct{ Field string } `json:"outcome"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &d))
	assert.False(t, d.Equal)
	require.NotNil(t, d.Divergence)
	assert.NotEmpty(t, d.Outcome)
}

// TestTraceTimelineCommand: the timeline of a recorded run is written as
// OUT.json (valid JSON with trace events) and OUT.html; a .json suffix on
// -o names the same pair.
func TestTraceTimelineCommand(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := tt("trace", "timeline", ttHostile, "-o", filepath.Join(dir, "h.json"))
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "572 frames in 18 lanes")
	js, err := os.ReadFile(filepath.Join(dir, "h.json"))
	require.NoError(t, err)
	var doc struct {
		TraceEvents []json.RawMessage `json:"traceEvents"`
	}
	require.NoError(t, json.Unmarshal(js, &doc))
	assert.Greater(t, len(doc.TraceEvents), 572)
	page, err := os.ReadFile(filepath.Join(dir, "h.html"))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(page, []byte("<!DOCTYPE html>")))

	code, _, stderr = tt("trace", "timeline", ttHostile, "-o", filepath.Join(dir, "h"))
	assert.Equal(t, 2, code, "both exist now")
	assert.Contains(t, stderr, "--force")
	code, _, stderr = tt("trace", "timeline", ttHostile, "-o", filepath.Join(dir, "h"), "--force")
	assert.Equal(t, 0, code, stderr)
}

// TestCorpusCoverCommand: the table and the JSON of a corpus; --check
// exits 1 when a row is left out and 0 (the control) when none is.
func TestCorpusCoverCommand(t *testing.T) {
	code, stdout, stderr := tt("corpus", "cover", "../../corpus/real")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "corpus cover: 6 inputs (6 traces, 0 FuzzDispatch inputs)")
	assert.Contains(t, stdout, "budget edges (runs):")

	code, stdout, _ = tt("corpus", "cover", "--json", "../../corpus/real")
	require.Equal(t, 0, code)
	var c struct {
		Inputs      int `json:"inputs"`
		Unexercised struct {
			Rows []string `json:"rows"`
		} `json:"unexercised"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &c))
	assert.Equal(t, 6, c.Inputs)

	dir := t.TempDir()
	code, _, stderr = tt("corpus", "cover", "--check", ttTrace(t, dir, "srdy.zst", wire.AppendFrame(nil, wire.SysRdy, nil)))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "unexercised: rows SCDX")

	var all []byte
	for _, tag := range wire.Tags() {
		all = wire.AppendFrame(all, tag, nil)
	}
	code, _, stderr = tt("corpus", "cover", "--check", ttTrace(t, dir, "rows.zst", all, wire.AppendFrame(nil, wire.Tag(0x41414141), nil)))
	assert.Equal(t, 1, code, "every row, but not every reason")
	assert.Contains(t, stderr, "rows none; reasons crc, pad, oneshot_repeat, overflow, out_of_order")
}

// TestTimelineWritesBothOrNeither: when the second file of a timeline
// cannot be written, the first is not replaced either (it once left a
// new JSON beside the old page). Control: both written replace both.
func TestTimelineWritesBothOrNeither(t *testing.T) {
	dir := t.TempDir()
	targets := []string{filepath.Join(dir, "tl.json"), filepath.Join(dir, "tl.html")}
	for _, p := range targets {
		require.NoError(t, os.WriteFile(p, []byte("OLD"), 0o644))
	}
	opt := outfile.Options{Force: true}
	put := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	full := func(io.Writer) error { return syscall.ENOSPC }
	err := writeAll(targets, opt, put("NEW"), full)
	require.ErrorIs(t, err, syscall.ENOSPC)
	for _, p := range targets {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "OLD", string(b), "%s is as it was", p)
	}
	assertNoTempFiles(t, dir)

	require.NoError(t, writeAll(targets, opt, put("NEW"), put("NEW")))
	for _, p := range targets {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "NEW", string(b))
	}
}
