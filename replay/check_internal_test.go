package replay

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay/model"
)

// everyFieldStream gives a stream whose outcome sets every field of the
// §4 JSON.
func everyFieldStream(t *testing.T) *Stream {
	t.Helper()
	bin := func(p interface{ AppendBinary([]byte) ([]byte, error) }) []byte {
		b, err := p.AppendBinary(nil)
		require.NoError(t, err)
		return b
	}
	snrq := wire.NewSnapshotRequest(7, wire.SnapshotCapture, "snap")
	korq := wire.KernelOpRequestPayload{RequestID: 9, Op: 2, Arg: 3, Arg2: 4}
	kadr := wire.NewKernelAddrs(0x1000000, 0xffff888000000000, 0xffffffff81000000)
	var b []byte
	b = wire.AppendFrame(b, wire.SysRdy, nil)
	b = wire.AppendFrame(b, wire.KernelAddrs, bin(&kadr))
	b = wire.AppendFrame(b, wire.SnapshotRequest, bin(&snrq))
	b = wire.AppendFrame(b, wire.KernelOpRequest, bin(&korq))
	b = wire.AppendFrame(b, wire.Step, []byte{5, 0})
	b = wire.AppendFrame(b, wire.WatchdogPause, nil)
	split := len(b) // paused at t=10, resumed at t=20
	b = wire.AppendFrame(b, wire.WatchdogResume, nil)
	b = wire.AppendFrame(b, wire.Stimulus, []byte("stim"))
	b = wire.AppendFrame(b, wire.SchedExit, []byte{7, 0, 0, 0})
	b = wire.AppendFrame(b, wire.SysRdy, nil)                             // a one-shot repeat
	b = append(wire.AppendFrame(b, wire.Stdout, []byte("torn")), 1, 2, 3) // and a truncated tail
	s := &Stream{}
	s.Append(10, b[:split])
	s.Append(20, b[split:])
	return s
}

// TestModelOutcomeDiffNamesTheField: the field-by-field comparison of
// invariant 10 finds nothing when the model and the streaming path agree
// (the control), and names the field when any one of them differs.
func TestModelOutcomeDiffNamesTheField(t *testing.T) {
	s := everyFieldStream(t)
	r := runStream(s, Chunking{Kind: ChunkRecorded}, nil, &violations{})
	out := r.out
	base := func() model.Outcome { return model.Evaluate(s.Data, s.Starts, s.Times).Outcome }
	m := base()
	require.Equal(t, "", modelOutcomeDiff(&out, &m), "streaming path and model agree")
	require.NotEmpty(t, m.SnapshotRequests)
	require.NotEmpty(t, m.KernelOps)
	require.NotNil(t, m.KASLR)
	require.NotEmpty(t, m.Verdicts)
	require.NotZero(t, m.WatchdogPauseNs)
	require.NotZero(t, m.Rejected.OneshotRepeat)
	require.NotZero(t, m.Rejected.TruncatedTailBytes)

	for _, tc := range []struct {
		field  string
		change func(m *model.Outcome)
	}{
		{"killed", func(m *model.Outcome) { m.Killed = !m.Killed }},
		{"kill_signals", func(m *model.Outcome) { m.KillSignals++ }},
		{"sys_rdy", func(m *model.Outcome) { m.SysRdy = !m.SysRdy }},
		{"snapshot_requests", func(m *model.Outcome) { m.SnapshotRequests = nil }},
		{"snapshot_requests[0]", func(m *model.Outcome) { m.SnapshotRequests[0].Tag = "snaq" }},
		{"snapshot_requests[0]", func(m *model.Outcome) { m.SnapshotRequests[0].ID++ }},
		{"snapshot_requests[0]", func(m *model.Outcome) { m.SnapshotRequests[0].Kind++ }},
		{"kernel_ops", func(m *model.Outcome) { m.KernelOps = nil }},
		{"kernel_ops[0]", func(m *model.Outcome) { m.KernelOps[0].Arg2++ }},
		{"kaslr", func(m *model.Outcome) { m.KASLR = nil }},
		{"kaslr", func(m *model.Outcome) { k := *m.KASLR; k.TextAddr++; m.KASLR = &k }},
		{"step", func(m *model.Outcome) { m.Step++ }},
		{"watchdog_pauses", func(m *model.Outcome) { m.WatchdogPauses++ }},
		{"watchdog_pause_ns", func(m *model.Outcome) { m.WatchdogPauseNs++ }},
		{"verdicts", func(m *model.Outcome) { m.Verdicts = nil }},
		{"verdicts[0]", func(m *model.Outcome) { m.Verdicts[0].Tag = "STDO" }},
		{"verdicts[0]", func(m *model.Outcome) { m.Verdicts[0].Len++ }},
		{"verdicts[0]", func(m *model.Outcome) { m.Verdicts[0].SHA256 = "00" + m.Verdicts[0].SHA256[2:] }},
		{"verdicts_dropped", func(m *model.Outcome) { m.VerdictsDropped++ }},
		{"verdicts_dropped_sha256", func(m *model.Outcome) { m.VerdictsDroppedSHA256 = "00" + m.VerdictsDroppedSHA256[2:] }},
		{"rejected (a reject counter)", func(m *model.Outcome) { m.Rejected.OneshotRepeat++ }},
		{"rejected (a reject counter)", func(m *model.Outcome) { m.Rejected.CRC++ }},
		{"rejected (a stream counter)", func(m *model.Outcome) { m.Rejected.TruncatedTailBytes++ }},
		{"rejected (a stream counter)", func(m *model.Outcome) { m.Rejected.ResyncBytes++ }},
	} {
		m := base()
		tc.change(&m)
		assert.Equal(t, tc.field, modelOutcomeDiff(&out, &m), tc.field)
	}

	// compareModel reports it as invariant 10, with both outcomes.
	m = base()
	m.Step++
	v := &violations{}
	compareModel(v, streamRun{out: out}, model.Result{Outcome: m})
	require.NotEmpty(t, v.list)
	assert.Contains(t, v.list[len(v.list)-1], "invariant 10: outcome differs from the model's in step")
}
