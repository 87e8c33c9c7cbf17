package replay_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// liveOutcome dispatches deliveries the way the live coordinator does:
// each delivery fed as it arrives, the clock reading its arrival time.
func liveOutcome(deliveries [][]byte, times []int64) dispatch.Outcome {
	s := dispatch.NewSession()
	for i, d := range deliveries {
		s.Feed(times[i], d, nil)
	}
	return s.Finish()
}

// traceOf writes deliveries (at 1 ms steps) as a trace with an END
// record holding outcome (nil: the live outcome).
func traceOf(t *testing.T, deliveries [][]byte, outcome *dispatch.Outcome) []byte {
	t.Helper()
	times := make([]int64, len(deliveries))
	for i := range times {
		times[i] = int64(i+1) * 1e6
	}
	if outcome == nil {
		o := liveOutcome(deliveries, times)
		outcome = &o
	}
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Meta{Backend: "test", Scenario: "unit"})
	require.NoError(t, err)
	for i, d := range deliveries {
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, times[i], d))
	}
	// An RX delivery (the host's reply) must not be fed to dispatch.
	require.NoError(t, w.WriteData(capture.RX, capture.BulkPort, 1, wire.AppendFrame(nil, wire.SchedExit, nil)))
	js, err := json.Marshal(outcome)
	require.NoError(t, err)
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: 99, Reason: "sched_exit", Outcome: js}))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// TestReplayMatchesRecordedOutcome (invariant 9) for every seed stream
// under every chunking strategy.
func TestReplayMatchesRecordedOutcome(t *testing.T) {
	chunkings := []string{"recorded", "whole", "bytes", "random:1", "random:99"}
	for _, seed := range corpus.Seeds() {
		trace := traceOf(t, seed.Deliveries, nil)
		for _, cs := range chunkings {
			c, err := replay.ParseChunking(cs)
			require.NoError(t, err)
			rep, err := replay.Trace(bytes.NewReader(trace), seed.Name, replay.Options{Chunking: c})
			require.NoError(t, err)
			assert.True(t, rep.Match, "%s/%s: %v", seed.Name, cs, rep.Diff)
			assert.Empty(t, rep.Violations, "%s/%s", seed.Name, cs)
			assert.True(t, rep.ModelChecked)
			assert.EqualValues(t, len(seed.Bytes()), rep.Bytes)
			assert.Equal(t, len(seed.Deliveries), rep.Deliveries)
		}
	}
}

// TestReplayReportsMismatch is the positive control of the comparison:
// a recorded outcome that differs is reported, field by field.
func TestReplayReportsMismatch(t *testing.T) {
	seed := corpus.Seeds()[1] // sched-exit-valid-crc
	times := []int64{1e6}
	o := liveOutcome(seed.Deliveries, times)
	o.Killed = false
	o.KillSignals = 2
	rep, err := replay.Trace(bytes.NewReader(traceOf(t, seed.Deliveries, &o)), "x", replay.Options{})
	require.NoError(t, err)
	assert.False(t, rep.Match)
	assert.Len(t, rep.Diff, 2)
	assert.Empty(t, rep.Violations, "a mismatch is not an invariant violation")
}

// TestReportJSON pins the JSON Lines object of docs/protocol.md.
func TestReportJSON(t *testing.T) {
	seed := corpus.Seeds()[1]
	rep, err := replay.Trace(bytes.NewReader(traceOf(t, seed.Deliveries, nil)), "run.zst", replay.Options{})
	require.NoError(t, err)
	js, err := json.Marshal(rep)
	require.NoError(t, err)
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(js))
	_, _ = dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	assert.Equal(t, []string{"trace", "frames", "bytes", "outcome", "recorded", "match", "violations", "truncated"}, keys)
	assert.Contains(t, string(js), `"trace":"run.zst","frames":1,"bytes":28`)
	assert.Contains(t, string(js), `"match":true,"violations":[],"truncated":null`)

	// A trace cut short says where: the readable prefix was replayed.
	full := traceOf(t, seed.Deliveries, nil)
	rep, err = replay.Trace(bytes.NewReader(full[:len(full)-3]), "cut.zst", replay.Options{})
	require.NoError(t, err)
	require.NotNil(t, rep.Truncation)
	js, _ = json.Marshal(rep)
	assert.Contains(t, string(js), fmt.Sprintf(`"truncated":{"at":%d,"reason":"`, rep.Truncation.At))
	assert.Contains(t, rep.Truncation.Reason, "truncated")
	assert.NotContains(t, rep.Truncation.Reason, "capture:")

	// A trace without END: recorded is null.
	var buf bytes.Buffer
	require.NoError(t, capture.ImportRaw(&buf, bytes.NewReader(seed.Bytes()), 0, capture.Meta{Backend: "import"}))
	rep, err = replay.Trace(&buf, "raw", replay.Options{})
	require.NoError(t, err)
	js, _ = json.Marshal(rep)
	assert.Contains(t, string(js), `"recorded":null,"match":true`)
}

func TestReplayRejectsBadTraces(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":     nil,
		"not zstd":  []byte("hello, this is not a trace"),
		"raw frame": wire.AppendFrame(nil, wire.SysRdy, nil),
	} {
		_, err := replay.Trace(bytes.NewReader(data), name, replay.Options{})
		assert.ErrorIs(t, err, replay.ErrBadTrace, name)
	}
}

func TestParseChunking(t *testing.T) {
	for _, ok := range []string{"recorded", "whole", "bytes", "random:0", "random:18446744073709551615"} {
		c, err := replay.ParseChunking(ok)
		require.NoError(t, err, ok)
		assert.Equal(t, ok, c.String())
	}
	for _, bad := range []string{"random:x", "random:-1", "halves", "WHOLE"} {
		_, err := replay.ParseChunking(bad)
		assert.Error(t, err, bad)
	}
}

// TestCheckStreamCatchesModelDisagreement: the invariant-10 oracle is
// live — a stream whose recorded times differ between paths cannot be
// faked, but a stream checked against a different stream's model fails.
func TestSaveAndReplayMutant(t *testing.T) {
	seed := corpus.Seeds()[0]
	s := &replay.Stream{}
	for i, d := range seed.Deliveries {
		s.Append(int64(i), d)
	}
	var buf bytes.Buffer
	require.NoError(t, replay.WriteStream(&buf, s, capture.Meta{Backend: "mutant"}))
	back, meta, end, err := replay.ReadStream(bytes.NewReader(buf.Bytes()), 1<<20)
	require.NoError(t, err)
	assert.Nil(t, end)
	assert.Equal(t, "mutant", meta.Backend)
	assert.Equal(t, s, back)
}

// TestReplaySkipsManyRXRecords: a live run records every SNRP the host
// sends as RX, and a snapshot flood makes dozens of them. Replay skips
// them all and still reads the TX that follows (it once stalled here,
// holding one decode buffer per skipped record). The TX-only trace is
// the control: both must give the same outcome.
func TestReplaySkipsManyRXRecords(t *testing.T) {
	snrp := wire.AppendFrame(nil, wire.SnapshotReply, make([]byte, wire.SnapshotReplySize))
	write := func(rx int) []byte {
		var buf bytes.Buffer
		w, err := capture.NewWriter(&buf, capture.Meta{Backend: "test"})
		require.NoError(t, err)
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, 1, wire.AppendFrame(nil, wire.SysRdy, nil)))
		for i := range rx {
			require.NoError(t, w.WriteData(capture.RX, capture.BulkPort, int64(2+i), snrp))
			require.NoError(t, w.WriteData(capture.TX, 0, int64(2+i), []byte("console line\n")))
		}
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(3+rx), wire.AppendFrame(nil, wire.SchedExit, nil)))
		require.NoError(t, w.Close())
		return buf.Bytes()
	}
	for _, rx := range []int{0, 100} {
		rep, err := replay.Trace(bytes.NewReader(write(rx)), "rx", replay.Options{})
		require.NoError(t, err, "%d RX records", rx)
		assert.Equal(t, 2, rep.Deliveries, "%d RX records", rx)
		assert.True(t, rep.Outcome.SysRdy, "%d RX records", rx)
		assert.True(t, rep.Outcome.Killed, "the TX after %d RX records is replayed", rx)
		assert.Empty(t, rep.Violations)
	}
}

// TestHeldStreamIsBoundedByDeliveries: a stream within the model limit
// in bytes but of more than MaxHeldDeliveries deliveries is not held
// (each delivery costs its Starts and Times entries), so it replays
// without the model check; a short one is held and model-checked (the
// control).
func TestHeldStreamIsBoundedByDeliveries(t *testing.T) {
	frame := wire.AppendFrame(nil, wire.Stimulus, nil)
	for _, tc := range []struct {
		deliveries int
		held       bool
	}{{1000, true}, {replay.MaxHeldDeliveries + 10, false}} {
		var buf bytes.Buffer
		w, err := capture.NewWriter(&buf, capture.Meta{Backend: "test"})
		require.NoError(t, err)
		for i := range tc.deliveries {
			require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(i), frame[i%16:i%16+1]))
		}
		require.NoError(t, w.Close())
		rep, err := replay.Trace(bytes.NewReader(buf.Bytes()), "bytes", replay.Options{})
		require.NoError(t, err)
		assert.Equal(t, tc.held, rep.ModelChecked, "%d deliveries", tc.deliveries)
		assert.Empty(t, rep.Violations)
		assert.EqualValues(t, tc.deliveries/16, rep.Frames)

		h, err := replay.Hold(bytes.NewReader(buf.Bytes()), 1<<20)
		require.NoError(t, err)
		assert.Equal(t, !tc.held, h.More)
		assert.LessOrEqual(t, h.Stream.Deliveries(), replay.MaxHeldDeliveries)
	}
}
