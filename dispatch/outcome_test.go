package dispatch_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenStream exercises every field of the Outcome JSON.
func goldenStream() []byte {
	return cat(
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(0x1000001, 0xffff888000000000, 0xffffffff81000001)),
		frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(7, wire.SnapshotCapture, "snap")),
		frameWithCRC(wire.KernelOpRequest, kernelOpBytes(9, 2, 3, 4)),
		frameWithCRC(wire.ScenarioStart, nil),
		frameWithCRC(wire.Step, u16(5)),
		frameWithCRC(wire.WatchdogPause, nil),
		frameWithCRC(wire.WatchdogResume, nil),
		frameWithCRC(wire.Stimulus, []byte("stim")),
		frameWithCRC(wire.SchedExit, []byte{7, 0, 0, 0}),
		frameWithTornCRC(wire.SchedExit, nil),
		frameWithPad(wire.Stimulus, nil, 1),
		frameWithCRC(wire.Tag(0x41414141), nil),
		frameWithCRC(wire.KernelOpReply, nil),
		frameWithCRC(wire.Step, nil),
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.WatchdogResume, nil),
		oversizeHeader(wire.Stdout),
		frameWithCRC(wire.Exit, []byte{0})[:10],
	)
}

// TestOutcomeJSONGolden: the Outcome marshals to the JSON of
// docs/protocol.md, field for field (testdata/outcome.golden.json).
func TestOutcomeJSONGolden(t *testing.T) {
	stream := goldenStream()
	h := newHarness()
	// One piece per frame, each delivered 1000 ns after the last, so the
	// watchdog pause spans a measurable time.
	var frames []int
	h.s.Feed(0, stream, func(m *dispatch.Message, _ dispatch.Result) {
		frames = append(frames, int(m.Offset))
	})
	h = newHarness()
	frames = append(frames, len(stream))
	prev := 0
	for _, end := range frames[1:] {
		h.now += 1000
		h.feed(stream[prev:end])
		prev = end
	}
	out := h.s.Finish()
	got, err := json.MarshalIndent(out, "", "  ")
	require.NoError(t, err)
	golden := filepath.Join("testdata", "outcome.golden.json")
	if *update {
		require.NoError(t, os.WriteFile(golden, append(got, '\n'), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(bytes.TrimSpace(want)), string(got))

	// Round trip: the recorded form decodes to an equal outcome.
	var back dispatch.Outcome
	require.NoError(t, json.Unmarshal(got, &back))
	assert.Empty(t, back.Diff(&out))
	assert.Empty(t, out.Diff(&back))
	assert.True(t, back.Equal(&out))
}

// TestOutcomeJSONFieldOrder pins the key order and the empty-list and
// null forms of §4 for a run where nothing happened.
func TestOutcomeJSONFieldOrder(t *testing.T) {
	o := dispatch.NewOutcome()
	o.SnapshotRequests, o.KernelOps, o.Verdicts = nil, nil, nil // nil lists must still print []
	got, err := json.Marshal(o)
	require.NoError(t, err)
	want := `{"killed":false,"kill_signals":0,"sys_rdy":false,"snapshot_requests":[],"kernel_ops":[],` +
		`"kaslr":null,"step":0,"watchdog_pauses":0,"watchdog_pause_ns":0,"verdicts":[],` +
		`"verdicts_dropped":0,"verdicts_dropped_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",` +
		`"rejected":{"crc":0,"pad":0,"unknown_tag":0,"forged_tag":0,"shape":0,"oneshot_repeat":0,` +
		`"overflow":0,"out_of_order":0,"oversize":0,"resync_bytes":0,"truncated_tail_bytes":0}}`
	assert.Equal(t, want, string(got))
}

// TestOutcomeDiff reports each difference, and nothing for equal ones.
func TestOutcomeDiff(t *testing.T) {
	a := *dispatchStream(t, goldenStream()).out()
	b := *dispatchStream(t, goldenStream()).out()
	assert.Empty(t, a.Diff(&b))
	b.Killed = false
	b.Verdicts[0].SHA256[0]++
	b.KASLR = nil
	d := a.Diff(&b)
	assert.Len(t, d, 3)
}

func TestVerdictUnmarshalRejectsBadInput(t *testing.T) {
	for _, in := range []string{
		`{"tag":"TOOLONG","len":0,"sha256":"` + string(bytes.Repeat([]byte("0"), 64)) + `"}`,
		`{"tag":"STIM","len":0,"sha256":"zz"}`,
		`{"tag":"STIM","len":-1,"sha256":"` + string(bytes.Repeat([]byte("0"), 64)) + `"}`,
		`[]`,
	} {
		var v dispatch.Verdict
		assert.Error(t, json.Unmarshal([]byte(in), &v), in)
	}
	var v dispatch.Verdict
	require.NoError(t, json.Unmarshal([]byte(`{"tag":"STIM","len":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`), &v))
	assert.Equal(t, wire.Stimulus, v.Tag)
	assert.Equal(t, dispatch.NewVerdict(wire.Stimulus, nil), v)
}

// TestOutcomeEqualAgreesWithDiff: Equal is false exactly when Diff
// reports something, for a change to any one field, both ways round.
func TestOutcomeEqualAgreesWithDiff(t *testing.T) {
	base := func() dispatch.Outcome { return *dispatchStream(t, goldenStream()).out() }
	a, b := base(), base()
	require.True(t, a.Equal(&b), "the same stream twice (control)")
	require.Empty(t, a.Diff(&b))
	changes := map[string]func(o *dispatch.Outcome){
		"killed":            func(o *dispatch.Outcome) { o.Killed = !o.Killed },
		"kill_signals":      func(o *dispatch.Outcome) { o.KillSignals++ },
		"sys_rdy":           func(o *dispatch.Outcome) { o.SysRdy = !o.SysRdy },
		"snapshot dropped":  func(o *dispatch.Outcome) { o.SnapshotRequests = o.SnapshotRequests[:0] },
		"snapshot tag":      func(o *dispatch.Outcome) { o.SnapshotRequests[0].Tag += "x" },
		"kernel op dropped": func(o *dispatch.Outcome) { o.KernelOps = nil },
		"kernel op arg2":    func(o *dispatch.Outcome) { o.KernelOps[0].Arg2++ },
		"kaslr unset":       func(o *dispatch.Outcome) { o.KASLR = nil },
		"kaslr text":        func(o *dispatch.Outcome) { o.KASLR = &dispatch.KASLR{TextAddr: 1} },
		"step":              func(o *dispatch.Outcome) { o.Step++ },
		"watchdog_pauses":   func(o *dispatch.Outcome) { o.WatchdogPauses++ },
		"watchdog_pause_ns": func(o *dispatch.Outcome) { o.WatchdogPauseNS++ },
		"verdict dropped":   func(o *dispatch.Outcome) { o.Verdicts = o.Verdicts[1:] },
		"verdict tag":       func(o *dispatch.Outcome) { o.Verdicts[0].Tag = wire.Stdout },
		"verdict len":       func(o *dispatch.Outcome) { o.Verdicts[0].Len++ },
		"verdict digest":    func(o *dispatch.Outcome) { o.Verdicts[0].SHA256[31]++ },
		"verdicts_dropped":  func(o *dispatch.Outcome) { o.VerdictsDropped++ },
		"dropped digest":    func(o *dispatch.Outcome) { o.VerdictsDroppedSHA256[0]++ },
		"rejected crc":      func(o *dispatch.Outcome) { o.Rejected.CRC++ },
		"rejected tail":     func(o *dispatch.Outcome) { o.Rejected.TruncatedTailBytes++ },
	}
	for name, change := range changes {
		got, want := base(), base()
		change(&got)
		assert.False(t, got.Equal(&want), name)
		assert.False(t, want.Equal(&got), name+" (the other way)")
		assert.NotEmpty(t, got.Diff(&want), name)
	}
}
