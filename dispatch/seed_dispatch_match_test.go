package dispatch_test

// Ports of the Rust original's dispatch_match_tests: the full dispatch
// switch, including its unknown-tag, host→guest and internal arms.

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// An unknown tag drops without bucketing or touching any sink.
func TestUnknownMsgTypeDropsWithoutBucketing(t *testing.T) {
	a := dispatch.NewAssembler()
	const unknown = wire.Tag(0xDEADBEEF)
	require.Equal(t, wire.Unknown, unknown.Class(), "0xDEADBEEF must not be in the gate table")
	msgs := feed(a, frameWithCRC(unknown, []byte("unknown-payload")))
	require.Len(t, msgs, 1)
	h := runDispatch(msgs)
	assert.Empty(t, h.bucket(), "unknown tag must not surface as a verdict")
	assert.False(t, h.killed(), "unknown tag must not promote kill")
	assert.Zero(t, h.bootComplete, "unknown tag must not fire SYS_RDY")
	assert.True(t, h.sysRdyRemaining(), "unknown tag leaves the SYS_RDY one-shot intact")
	assert.EqualValues(t, 1, h.out().Rejected.UnknownTag)
}

// A torn SCHED_EXIT must not bucket.
func TestSchedExitTornCRCDoesNotBucket(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithTornCRC(wire.SchedExit, []byte("torn-payload")))
	require.Len(t, msgs, 1)
	assert.False(t, msgs[0].CRCOK, "torn SCHED_EXIT surfaces as CRCOK=false")
	h := runDispatch(msgs)
	assert.Empty(t, h.bucket(), "torn SCHED_EXIT must not pollute the bucket")
	assert.False(t, h.killed(), "torn SCHED_EXIT must not promote kill")
	assert.Zero(t, h.kill, "torn SCHED_EXIT must not poke the kill notifier")
}

// Positive control: an intact SCHED_EXIT buckets once with its payload.
func TestSchedExitValidCRCBucketsWithPayload(t *testing.T) {
	a := dispatch.NewAssembler()
	payload := binary.LittleEndian.AppendUint32(nil, uint32(0xFFFFFFFF)) // (-1i32).to_le_bytes()
	msgs := feed(a, frameWithCRC(wire.SchedExit, payload))
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].CRCOK)
	h := runDispatch(msgs)
	require.Len(t, h.bucket(), 1, "intact SCHED_EXIT buckets exactly once")
	assert.Equal(t, wire.SchedExit, h.bucket()[0].Tag)
	assertHolds(t, h.bucket()[0], payload)
	assert.True(t, h.killed())
	assert.EqualValues(t, 1, h.kill)
}

// A guest-stamped SNAPSHOT_REPLY on TX must not bucket, even intact.
func TestSnapshotReplyOnTXDoesNotBucket(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithCRC(wire.SnapshotReply, []byte("forged-reply")))
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].CRCOK)
	h := runDispatch(msgs)
	assert.Empty(t, h.bucket(), "SNAPSHOT_REPLY is host→guest only")
	assert.Zero(t, h.snapshotPending(), "a reply is not a request")
	assert.Equal(t, wire.HostToGuest, wire.SnapshotReply.Class(), "SNRP is classified host→guest")
	assert.EqualValues(t, 1, h.out().Rejected.ForgedTag)
}

// An intact SYS_RDY with a payload must not promote, and must not bucket.
func TestSysRdyWithNonemptyPayloadDoesNotPromote(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithCRC(wire.SysRdy, []byte("smuggled-bytes")))
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].CRCOK)
	assert.Len(t, msgs[0].Payload, 14, "the smuggled payload propagates verbatim from the assembler")
	h := runDispatch(msgs)
	assert.Zero(t, h.bootComplete, "the shape gate blocks the smuggle")
	assert.True(t, h.sysRdyRemaining(), "the one-shot stays for a well-formed SYS_RDY")
	assert.Empty(t, h.bucket(), "SYS_RDY never buckets")
	assert.EqualValues(t, 1, h.out().Rejected.Shape)
}

// The SYS_RDY one-shot lives in the sinks, not the assembler: two feeds
// of SYS_RDY promote once.
func TestSysRdyFiresOnceAcrossTwoFeedCalls(t *testing.T) {
	a := dispatch.NewAssembler()
	first := feed(a, frameWithCRC(wire.SysRdy, nil))
	require.Len(t, first, 1)
	second := feed(a, frameWithCRC(wire.SysRdy, nil))
	require.Len(t, second, 1)
	h := runDispatch(append(first, second...))
	assert.EqualValues(t, 1, h.bootComplete, "the second SYS_RDY across a feed boundary must not fire")
	assert.False(t, h.sysRdyRemaining(), "the first SYS_RDY consumed the one-shot")
}

// SYS_RDY, SCHED_EXIT, SNAPSHOT_REQUEST and STIMULUS in one drain: each
// gate fires, and only SCHED_EXIT and STIMULUS bucket.
func TestInterleavedBatchDispatchesAllArmsIndependently(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.SchedExit, []byte("exit")),
		frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(7, wire.SnapshotCapture, "snap")),
		frameWithCRC(wire.Stimulus, []byte("stim-payload")),
	))
	require.Len(t, msgs, 4)
	for _, m := range msgs {
		assert.True(t, m.CRCOK, "all four frames are intact")
	}
	h := runDispatch(msgs)
	assert.EqualValues(t, 1, h.bootComplete, "SYS_RDY promotes")
	assert.False(t, h.sysRdyRemaining(), "SYS_RDY one-shot consumed")
	assert.True(t, h.killed(), "SCHED_EXIT promotes kill")
	assert.EqualValues(t, 1, h.kill)
	assert.Equal(t, 1, h.snapshotPending(), "SNAPSHOT_REQUEST decodes and pushes")
	require.Len(t, h.bucket(), 2, "bucket holds SCHED_EXIT and STIMULUS only")
	var tags []wire.Tag
	for _, v := range h.bucket() {
		tags = append(tags, v.Tag)
	}
	assert.Contains(t, tags, wire.SchedExit)
	assert.Contains(t, tags, wire.Stimulus)
	assert.NotContains(t, tags, wire.SysRdy)
	assert.NotContains(t, tags, wire.SnapshotRequest)
}

// A SYS_RDY-only batch leaves the bucket empty.
func TestSysRdyOnlyBatchYieldsEmptyBucket(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, frameWithCRC(wire.SysRdy, nil))
	require.Len(t, msgs, 1)
	h := runDispatch(msgs)
	assert.Empty(t, h.bucket(), "a SYS_RDY-only batch produces an empty bucket")
	assert.EqualValues(t, 1, h.bootComplete)
}

// Every intact SCHED_EXIT pokes the kill notifier and buckets.
func TestMultipleSchedExitFramesPumpEventfdPerFrame(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(
		frameWithCRC(wire.SchedExit, []byte("first")),
		frameWithCRC(wire.SchedExit, []byte("second")),
		frameWithCRC(wire.SchedExit, []byte("third")),
	))
	require.Len(t, msgs, 3)
	h := runDispatch(msgs)
	assert.True(t, h.killed(), "kill flag is set")
	assert.EqualValues(t, 3, h.kill, "one notification per intact SCHED_EXIT")
	assert.EqualValues(t, 3, h.out().KillSignals)
	require.Len(t, h.bucket(), 3, "every intact SCHED_EXIT buckets")
	for i, want := range []string{"first", "second", "third"} {
		assert.Equal(t, wire.SchedExit, h.bucket()[i].Tag)
		assertHolds(t, h.bucket()[i], []byte(want))
	}
}

// A torn SCHED_EXIT between two intact ones neither buckets nor promotes.
func TestSchedExitMixedCRCBatchFiltersTornFrame(t *testing.T) {
	a := dispatch.NewAssembler()
	msgs := feed(a, cat(
		frameWithCRC(wire.SchedExit, []byte("valid-1")),
		frameWithTornCRC(wire.SchedExit, []byte("torn")),
		frameWithCRC(wire.SchedExit, []byte("valid-2")),
	))
	require.Len(t, msgs, 3)
	assert.True(t, msgs[0].CRCOK)
	assert.False(t, msgs[1].CRCOK)
	assert.True(t, msgs[2].CRCOK)
	h := runDispatch(msgs)
	require.Len(t, h.bucket(), 2, "the torn middle frame drops; the bookends bucket")
	assertHolds(t, h.bucket()[0], []byte("valid-1"))
	assertHolds(t, h.bucket()[1], []byte("valid-2"))
	assert.True(t, h.killed())
	assert.EqualValues(t, 2, h.kill, "exactly the two intact frames poke the kill notifier")
}
