package dispatch_test

// Ports of the Rust original's crc_defense_tests: the CRC-gated
// promotion and decode paths of the bulk-port dispatch, driven through
// the production Assembler and Dispatch.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// A torn SCHED_EXIT must not set the kill flag, poke the kill notifier
// or bucket: a hostile guest must not force an early exit.
func TestSchedExitWithTornCRCDoesNotPromoteKill(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithTornCRC(wire.SchedExit, []byte("exit-payload")))
	require.Len(t, msgs, 1, "assembler emits one message")
	assert.False(t, msgs[0].CRCOK, "torn CRC must surface as CRCOK=false")
	assert.Equal(t, wire.SchedExit, msgs[0].Tag, "tag unaffected by CRC mismatch")
	h := runDispatch(msgs)
	assert.False(t, h.killed(), "kill flag must not flip on a torn SCHED_EXIT")
	assert.Zero(t, h.kill, "kill notifier must not fire on a torn SCHED_EXIT")
	assert.Empty(t, h.bucket(), "torn SCHED_EXIT must not surface as a verdict")
}

// Positive control: an intact SCHED_EXIT promotes and buckets once.
func TestSchedExitWithValidCRCDoesPromoteKill(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithCRC(wire.SchedExit, []byte("exit-payload")))
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].CRCOK, "matching CRC must surface as CRCOK=true")
	h := runDispatch(msgs)
	assert.True(t, h.killed(), "kill flag must flip on an intact SCHED_EXIT")
	assert.EqualValues(t, 1, h.kill, "kill notifier fires once")
	require.Len(t, h.bucket(), 1, "intact SCHED_EXIT buckets exactly once")
	assert.Equal(t, wire.SchedExit, h.bucket()[0].Tag)
	assertHolds(t, h.bucket()[0], []byte("exit-payload"))
}

// The gate is per message: torn SCHED_EXITs around an intact STIMULUS
// still do not promote, and only the STIMULUS buckets.
func TestSchedExitTornCRCDoesNotPromoteWhenOtherValidFramesPresent(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(
		frameWithTornCRC(wire.SchedExit, []byte("first")),
		frameWithCRC(wire.Stimulus, []byte("valid")),
		frameWithTornCRC(wire.SchedExit, []byte("second")),
	))
	require.Len(t, msgs, 3)
	assert.False(t, msgs[0].CRCOK)
	assert.True(t, msgs[1].CRCOK)
	assert.False(t, msgs[2].CRCOK)
	h := runDispatch(msgs)
	assert.False(t, h.killed(), "neither torn SCHED_EXIT may promote")
	assert.Zero(t, h.kill, "kill notifier must stay untouched")
	require.Len(t, h.bucket(), 1, "only the intact STIMULUS buckets")
	assert.Equal(t, wire.Stimulus, h.bucket()[0].Tag)
}

// A torn SNAPSHOT_REQUEST must be dropped before it is decoded.
func TestSnapshotRequestWithTornCRCIsDropped(t *testing.T) {
	a := dispatch.NewAssembler()
	payload := snapshotRequestBytes(7, wire.SnapshotCapture, "snap_dump")
	msgs := feed(a, frameWithTornCRC(wire.SnapshotRequest, payload))
	require.Len(t, msgs, 1, "assembler emits one message")
	assert.False(t, msgs[0].CRCOK)
	assert.Equal(t, wire.SnapshotRequest, msgs[0].Tag)
	h := runDispatch(msgs)
	assert.Zero(t, h.snapshotPending(), "torn SNAPSHOT_REQUEST must not push")
	assert.Empty(t, h.bucket(), "SNAPSHOT_REQUEST never buckets")
}

// Positive control: an intact, well-formed SNAPSHOT_REQUEST is pushed
// with its decoded fields.
func TestSnapshotRequestWithValidCRCIsPushed(t *testing.T) {
	a := dispatch.NewAssembler()
	payload := snapshotRequestBytes(42, wire.SnapshotCapture, "valid_tag")
	msgs := feed(a, frameWithCRC(wire.SnapshotRequest, payload))
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].CRCOK)
	h := runDispatch(msgs)
	require.Equal(t, 1, h.snapshotPending(), "intact SNAPSHOT_REQUEST must push")
	assert.EqualValues(t, 42, h.out().SnapshotRequests[0].ID, "request id round-trips")
	assert.Equal(t, "valid_tag", h.out().SnapshotRequests[0].Tag)
	assert.Empty(t, h.bucket(), "SNAPSHOT_REQUEST never buckets")
}

// A torn SNAPSHOT_REQUEST between two intact ones drops independently.
func TestSnapshotRequestTornCRCDroppedInMixedBatch(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(
		frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, wire.SnapshotCapture, "first")),
		frameWithTornCRC(wire.SnapshotRequest, snapshotRequestBytes(2, wire.SnapshotCapture, "torn")),
		frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(3, wire.SnapshotCapture, "third")),
	))
	require.Len(t, msgs, 3)
	assert.True(t, msgs[0].CRCOK)
	assert.False(t, msgs[1].CRCOK)
	assert.True(t, msgs[2].CRCOK)
	h := runDispatch(msgs)
	require.Equal(t, 2, h.snapshotPending(), "exactly the two intact requests push")
	var ids []uint32
	for _, r := range h.out().SnapshotRequests {
		ids = append(ids, r.ID)
	}
	assert.Equal(t, []uint32{1, 3}, ids, "torn id=2 is filtered out")
}

// Torn SCHED_EXIT and torn SNAPSHOT_REQUEST in one drain: both gates
// short-circuit.
func TestBothGatesDropTornFramesInSameDrain(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(
		frameWithTornCRC(wire.SchedExit, []byte("sched-exit")),
		frameWithTornCRC(wire.SnapshotRequest, snapshotRequestBytes(99, wire.SnapshotCapture, "tag")),
	))
	require.Len(t, msgs, 2)
	assert.False(t, msgs[0].CRCOK)
	assert.False(t, msgs[1].CRCOK)
	h := runDispatch(msgs)
	assert.False(t, h.killed(), "torn SCHED_EXIT must not promote kill")
	assert.Zero(t, h.kill, "torn SCHED_EXIT must not poke the kill notifier")
	assert.Zero(t, h.snapshotPending(), "torn SNAPSHOT_REQUEST must not push")
	assert.Empty(t, h.bucket(), "both torn frames drop from the bucket")
}

// A torn SYS_RDY must not fire boot-complete and must leave the one-shot
// available for a later intact one.
func TestSysRdyWithTornCRCDoesNotFireEventfd(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithTornCRC(wire.SysRdy, nil))
	require.Len(t, msgs, 1, "assembler emits one message")
	// An empty payload's CRC is 0, so the flipped crc is 0xFFFFFFFF.
	assert.False(t, msgs[0].CRCOK)
	assert.Equal(t, wire.SysRdy, msgs[0].Tag)
	h := runDispatch(msgs)
	assert.Zero(t, h.bootComplete, "boot-complete must not fire on a torn SYS_RDY")
	assert.True(t, h.sysRdyRemaining(), "the one-shot must survive a dropped frame")

	// And the survivor really is usable: an intact SYS_RDY now promotes.
	h.run(feed(a, frameWithCRC(wire.SysRdy, nil)))
	assert.EqualValues(t, 1, h.bootComplete)
}

// Positive control: an intact SYS_RDY fires once and consumes the
// one-shot.
func TestSysRdyWithValidCRCFiresEventfdOnce(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithCRC(wire.SysRdy, nil))
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].CRCOK)
	h := runDispatch(msgs)
	assert.EqualValues(t, 1, h.bootComplete, "boot-complete fires once")
	assert.False(t, h.sysRdyRemaining(), "the one-shot is consumed")
}

// Two intact SYS_RDY frames: the first promotes, the second drops.
func TestSysRdyWithValidCRCFiresOnceThenSubsequentDrops(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(frameWithCRC(wire.SysRdy, nil), frameWithCRC(wire.SysRdy, nil)))
	require.Len(t, msgs, 2)
	assert.True(t, msgs[0].CRCOK)
	assert.True(t, msgs[1].CRCOK)
	h := runDispatch(msgs)
	assert.EqualValues(t, 1, h.bootComplete, "the second SYS_RDY must not fire")
	assert.False(t, h.sysRdyRemaining())
	assert.EqualValues(t, 1, h.out().Rejected.OneshotRepeat)
}

// Intact SYS_RDY and SCHED_EXIT in one drain fire independently.
func TestSysRdyAndSchedExitFireIndependently(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(frameWithCRC(wire.SysRdy, nil), frameWithCRC(wire.SchedExit, []byte("exit-payload"))))
	require.Len(t, msgs, 2)
	assert.True(t, msgs[0].CRCOK)
	assert.True(t, msgs[1].CRCOK)
	h := runDispatch(msgs)
	assert.EqualValues(t, 1, h.bootComplete, "SYS_RDY promotes")
	assert.False(t, h.sysRdyRemaining(), "SYS_RDY one-shot consumed")
	assert.True(t, h.killed(), "SCHED_EXIT promotes kill")
	assert.EqualValues(t, 1, h.kill, "SCHED_EXIT pokes the kill notifier")
}
