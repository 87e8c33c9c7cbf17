package dispatch_test

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// noEffect asserts that nothing but reject counters changed.
func noEffect(t *testing.T, h *harness) {
	t.Helper()
	o := h.out()
	assert.False(t, o.Killed, "kill flag")
	assert.Zero(t, o.KillSignals, "kill signals")
	assert.False(t, o.SysRdy, "sys_rdy")
	assert.Empty(t, o.SnapshotRequests, "snapshot queue")
	assert.Empty(t, o.KernelOps, "kernel-op queue")
	assert.Nil(t, o.KASLR, "kernel address slots")
	assert.Zero(t, o.Step, "step")
	assert.Zero(t, o.WatchdogPauses, "watchdog pauses")
	assert.Zero(t, o.WatchdogPauseNS, "watchdog pause ns")
	assert.Empty(t, o.Verdicts, "verdict bucket")
	assert.Zero(t, h.kill+h.bootComplete+h.physBase+h.kaslr, "notifiers")
	assert.Empty(t, h.wd.rearms, "watchdog re-arms")
	assert.Empty(t, h.wd.pauses, "watchdog pauses")
	assert.Empty(t, h.wd.resumes, "watchdog resumes")
	assert.Zero(t, h.s.ScenarioStart(), "scenario start")
	assert.False(t, h.s.Paused(), "paused")
}

// gateCase is one row of the gate-table test: the frames before, the
// frame under test, and what must happen to it.
type gateCase struct {
	name   string
	before [][]byte // frames dispatched first (their effects are allowed)
	frame  []byte
	reject dispatch.Reason
	effect dispatch.Effect
	check  func(t *testing.T, h *harness) // for accepted frames
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

func gateCases() []gateCase {
	snrq := snapshotRequestBytes(5, wire.SnapshotWatch, "tag-5")
	korq := kernelOpBytes(9, 3, 0x1000, 0x2000)
	kadr := kernelAddrsBytes(0x1000001, 0xffff888000000000, 0xffffffff81000001)
	tornPayload := []byte("x")
	var cases []gateCase

	// Every intact, listed tag is rejected when torn (crc or pad) —
	// rows share the first two gates.
	for _, tag := range wire.Tags() {
		var p []byte
		switch tag {
		case wire.SnapshotRequest:
			p = snrq
		case wire.KernelOpRequest:
			p = korq
		case wire.KernelAddrs:
			p = kadr
		case wire.Step:
			p = u16(3)
		case wire.Lifecycle:
			p = []byte{2}
		case wire.SysRdy, wire.WatchdogPause, wire.WatchdogResume:
			p = nil
		default:
			p = tornPayload
		}
		cases = append(cases,
			gateCase{name: tag.String() + "/torn-crc", frame: frameWithTornCRC(tag, p), reject: dispatch.RejectCRC},
			gateCase{name: tag.String() + "/pad", frame: frameWithPad(tag, p, 1), reject: dispatch.RejectPad},
			// crc is judged before pad.
			gateCase{name: tag.String() + "/torn-crc-and-pad", frame: append(wire.AppendHeader(nil, wire.Header{Tag: tag, Len: uint32(len(p)), CRC: ^wire.Checksum(p), Pad: 7}), p...), reject: dispatch.RejectCRC},
		)
	}

	cases = append(cases, []gateCase{
		// SRDY
		{name: "SRDY/accepted", frame: frameWithCRC(wire.SysRdy, nil), effect: dispatch.EffectBootComplete,
			check: func(t *testing.T, h *harness) {
				assert.True(t, h.out().SysRdy)
				assert.EqualValues(t, 1, h.bootComplete)
				assert.Empty(t, h.bucket(), "internal tags never bucket")
			}},
		{name: "SRDY/shape", frame: frameWithCRC(wire.SysRdy, []byte{0}), reject: dispatch.RejectShape},
		{name: "SRDY/repeat", before: [][]byte{frameWithCRC(wire.SysRdy, nil)}, frame: frameWithCRC(wire.SysRdy, nil), reject: dispatch.RejectOneshotRepeat},
		// SCDX
		{name: "SCDX/accepted", frame: frameWithCRC(wire.SchedExit, []byte{7, 0, 0, 0}), effect: dispatch.EffectKill,
			check: func(t *testing.T, h *harness) {
				assert.True(t, h.out().Killed)
				assert.EqualValues(t, 1, h.kill)
				require.Len(t, h.bucket(), 1)
				assert.Equal(t, wire.SchedExit, h.bucket()[0].Tag)
			}},
		// SNRQ
		{name: "SNRQ/accepted", frame: frameWithCRC(wire.SnapshotRequest, snrq), effect: dispatch.EffectSnapshotQueued,
			check: func(t *testing.T, h *harness) {
				assert.Equal(t, []dispatch.SnapshotRequest{{ID: 5, Kind: wire.SnapshotWatch, Tag: "tag-5"}}, h.out().SnapshotRequests)
				assert.Empty(t, h.bucket())
			}},
		{name: "SNRQ/accepted-full-tag", frame: frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, 1, string(make64('a')))), effect: dispatch.EffectSnapshotQueued,
			check: func(t *testing.T, h *harness) {
				assert.Equal(t, string(make64('a')), h.out().SnapshotRequests[0].Tag)
			}},
		{name: "SNRQ/short", frame: frameWithCRC(wire.SnapshotRequest, snrq[:71]), reject: dispatch.RejectShape},
		{name: "SNRQ/long", frame: frameWithCRC(wire.SnapshotRequest, append(append([]byte{}, snrq...), 0)), reject: dispatch.RejectShape},
		{name: "SNRQ/kind-0", frame: frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, 0, "t")), reject: dispatch.RejectShape},
		{name: "SNRQ/kind-3", frame: frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, 3, "t")), reject: dispatch.RejectShape},
		{name: "SNRQ/bad-utf8", frame: frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, 1, "\xff\xfe")), reject: dispatch.RejectShape},
		{name: "SNRQ/bytes-after-nul", frame: frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, 1, "ab\x00c")), reject: dispatch.RejectShape},
		{name: "SNRQ/overflow", before: repeatFrame(wire.SnapshotRequest, snrq, dispatch.MaxSnapshotRequests), frame: frameWithCRC(wire.SnapshotRequest, snrq), reject: dispatch.RejectOverflow},
		{name: "SNRQ/shape-before-overflow", before: repeatFrame(wire.SnapshotRequest, snrq, dispatch.MaxSnapshotRequests), frame: frameWithCRC(wire.SnapshotRequest, snrq[:10]), reject: dispatch.RejectShape},
		// KORQ
		{name: "KORQ/accepted", frame: frameWithCRC(wire.KernelOpRequest, korq), effect: dispatch.EffectKernelOpQueued,
			check: func(t *testing.T, h *harness) {
				assert.Equal(t, []dispatch.KernelOp{{ID: 9, Op: 3, Arg: 0x1000, Arg2: 0x2000}}, h.out().KernelOps)
				assert.Empty(t, h.bucket())
			}},
		{name: "KORQ/short", frame: frameWithCRC(wire.KernelOpRequest, korq[:23]), reject: dispatch.RejectShape},
		{name: "KORQ/long", frame: frameWithCRC(wire.KernelOpRequest, append(append([]byte{}, korq...), 0)), reject: dispatch.RejectShape},
		{name: "KORQ/overflow", before: repeatFrame(wire.KernelOpRequest, korq, dispatch.MaxKernelOps), frame: frameWithCRC(wire.KernelOpRequest, korq), reject: dispatch.RejectOverflow},
		// KADR
		{name: "KADR/accepted", frame: frameWithCRC(wire.KernelAddrs, kadr), effect: dispatch.EffectKernelAddrs,
			check: func(t *testing.T, h *harness) {
				assert.Equal(t, &dispatch.KASLR{PhysBase: 0x1000000, PageOffsetBase: 0xffff888000000000, TextAddr: 0xffffffff81000000}, h.out().KASLR)
				assert.EqualValues(t, 1, h.physBase)
				assert.EqualValues(t, 1, h.kaslr)
				assert.Empty(t, h.bucket())
			}},
		{name: "KADR/accepted-zero-page-offset", frame: frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(1, 0, 1)), effect: dispatch.EffectKernelAddrs,
			check: func(t *testing.T, h *harness) {
				assert.Equal(t, &dispatch.KASLR{}, h.out().KASLR)
			}},
		{name: "KADR/short", frame: frameWithCRC(wire.KernelAddrs, kadr[:16]), reject: dispatch.RejectShape},
		{name: "KADR/phys-zero", frame: frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(0, 5, 1)), reject: dispatch.RejectShape},
		{name: "KADR/text-zero", frame: frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(1, 5, 0)), reject: dispatch.RejectShape},
		{name: "KADR/repeat", before: [][]byte{frameWithCRC(wire.KernelAddrs, kadr)}, frame: frameWithCRC(wire.KernelAddrs, kadr), reject: dispatch.RejectOneshotRepeat},
		// SCPP / SCRR
		{name: "SCPP/accepted", frame: frameWithCRC(wire.WatchdogPause, nil), effect: dispatch.EffectWatchdogPause,
			check: func(t *testing.T, h *harness) {
				assert.EqualValues(t, 1, h.out().WatchdogPauses)
				assert.True(t, h.s.Paused())
				assert.Equal(t, []int64{100}, h.wd.pauses)
				assert.Empty(t, h.bucket())
			}},
		{name: "SCPP/shape", frame: frameWithCRC(wire.WatchdogPause, []byte{1}), reject: dispatch.RejectShape},
		{name: "SCPP/out-of-order", before: [][]byte{frameWithCRC(wire.WatchdogPause, nil)}, frame: frameWithCRC(wire.WatchdogPause, nil), reject: dispatch.RejectOutOfOrder},
		{name: "SCRR/accepted", before: [][]byte{frameWithCRC(wire.WatchdogPause, nil)}, frame: frameWithCRC(wire.WatchdogResume, nil), effect: dispatch.EffectWatchdogResume,
			check: func(t *testing.T, h *harness) {
				assert.False(t, h.s.Paused())
				assert.EqualValues(t, 250, h.out().WatchdogPauseNS, "pause at t=0, resume at t=250 (the harness clock)")
				assert.Equal(t, []int64{250}, h.wd.resumes)
			}},
		{name: "SCRR/shape", before: [][]byte{frameWithCRC(wire.WatchdogPause, nil)}, frame: frameWithCRC(wire.WatchdogResume, []byte{0}), reject: dispatch.RejectShape},
		{name: "SCRR/out-of-order", frame: frameWithCRC(wire.WatchdogResume, nil), reject: dispatch.RejectOutOfOrder},
		// STEP
		{name: "STEP/accepted", frame: frameWithCRC(wire.Step, u16(0x0102)), effect: dispatch.EffectStep,
			check: func(t *testing.T, h *harness) {
				assert.EqualValues(t, 0x0102, h.out().Step)
				assert.Empty(t, h.bucket())
			}},
		{name: "STEP/short", frame: frameWithCRC(wire.Step, []byte{1}), reject: dispatch.RejectShape},
		{name: "STEP/long", frame: frameWithCRC(wire.Step, []byte{1, 2, 3}), reject: dispatch.RejectShape},
		// SCST
		{name: "SCST/accepted", frame: frameWithCRC(wire.ScenarioStart, []byte("steady")), effect: dispatch.EffectScenarioStart,
			check: func(t *testing.T, h *harness) {
				assert.EqualValues(t, 100, h.s.ScenarioStart())
				assert.Equal(t, []int64{100}, h.wd.rearms)
				require.Len(t, h.bucket(), 1)
				assert.Equal(t, wire.ScenarioStart, h.bucket()[0].Tag)
			}},
		// LIFE
		{name: "LIFE/accepted", frame: frameWithCRC(wire.Lifecycle, []byte{4}), effect: dispatch.EffectBucket,
			check: func(t *testing.T, h *harness) { require.Len(t, h.bucket(), 1) }},
		{name: "LIFE/zero", frame: frameWithCRC(wire.Lifecycle, []byte{0}), reject: dispatch.RejectShape},
		{name: "LIFE/five", frame: frameWithCRC(wire.Lifecycle, []byte{5}), reject: dispatch.RejectShape},
		{name: "LIFE/empty", frame: frameWithCRC(wire.Lifecycle, nil), reject: dispatch.RejectShape},
		{name: "LIFE/long", frame: frameWithCRC(wire.Lifecycle, []byte{1, 1}), reject: dispatch.RejectShape},
		// host→guest and unknown
		{name: "SNRP/forged", frame: frameWithCRC(wire.SnapshotReply, make([]byte, wire.SnapshotReplySize)), reject: dispatch.RejectForgedTag},
		{name: "KORP/forged", frame: frameWithCRC(wire.KernelOpReply, []byte("reply")), reject: dispatch.RejectForgedTag},
		{name: "unknown", frame: frameWithCRC(wire.Tag(0x41424344), nil), reject: dispatch.RejectUnknownTag},
		{name: "unknown-lowercase", frame: frameWithCRC(wire.Tag(0x73636478), []byte("scdx")), reject: dispatch.RejectUnknownTag},
	}...)

	// Every plain verdict tag buckets its payload, verbatim.
	for _, tag := range wire.Tags() {
		if tag.Class() != wire.Verdict || tag == wire.SchedExit || tag == wire.ScenarioStart || tag == wire.Lifecycle {
			continue
		}
		payload := []byte("payload of " + tag.String())
		cases = append(cases, gateCase{name: tag.String() + "/accepted", frame: frameWithCRC(tag, payload), effect: dispatch.EffectBucket,
			check: func(t *testing.T, h *harness) {
				require.Len(t, h.bucket(), 1)
				v := h.bucket()[0]
				assert.Equal(t, tag, v.Tag)
				assert.Equal(t, len(payload), v.Len)
				assert.Equal(t, dispatch.Digest(sha256.Sum256(payload)), v.SHA256)
				assert.False(t, h.out().Killed)
			}})
	}
	return cases
}

func make64(c byte) []byte {
	b := make([]byte, wire.SnapshotTagMax)
	for i := range b {
		b[i] = c
	}
	return b
}

func repeatFrame(tag wire.Tag, payload []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = frameWithCRC(tag, payload)
	}
	return out
}

// TestGateTable drives every row of the gate table (docs/protocol.md)
// through a Session: the effect when the gate passes, and for each
// way it must not, the reject reason and no effect at all.
func TestGateTable(t *testing.T) {
	for _, tc := range gateCases() {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness()
			for _, f := range tc.before {
				for _, r := range h.feed(f) {
					require.True(t, r.Accepted(), "setup frame must be accepted")
				}
			}
			// Snapshot the state the setup frames produced; the frame
			// under test must change nothing but one reject counter.
			before := *h.out()
			before.Verdicts = append([]dispatch.Verdict(nil), before.Verdicts...)
			before.SnapshotRequests = append([]dispatch.SnapshotRequest(nil), before.SnapshotRequests...)
			before.KernelOps = append([]dispatch.KernelOp(nil), before.KernelOps...)
			notifiers := [4]int{h.kill, h.bootComplete, h.physBase, h.kaslr}
			paused := h.s.Paused()
			wd := [3]int{len(h.wd.rearms), len(h.wd.pauses), len(h.wd.resumes)}
			if len(tc.before) == 0 {
				noEffect(t, h)
			}

			h.now = 100
			if tc.name == "SCRR/accepted" {
				h.now = 250
			}
			results := h.feed(tc.frame)
			require.Len(t, results, 1)
			res := results[0]
			assert.Equal(t, tc.reject, res.Reject, "reject reason")
			assert.Equal(t, tc.effect, res.Effect, "effect")

			if tc.reject != dispatch.RejectNone {
				want := before
				switch tc.reject {
				case dispatch.RejectCRC:
					want.Rejected.CRC++
				case dispatch.RejectPad:
					want.Rejected.Pad++
				case dispatch.RejectUnknownTag:
					want.Rejected.UnknownTag++
				case dispatch.RejectForgedTag:
					want.Rejected.ForgedTag++
				case dispatch.RejectShape:
					want.Rejected.Shape++
				case dispatch.RejectOneshotRepeat:
					want.Rejected.OneshotRepeat++
				case dispatch.RejectOverflow:
					want.Rejected.Overflow++
				case dispatch.RejectOutOfOrder:
					want.Rejected.OutOfOrder++
				}
				assert.Empty(t, h.out().Diff(&want), "a rejected frame has no effect but its counter")
				assert.Equal(t, notifiers, [4]int{h.kill, h.bootComplete, h.physBase, h.kaslr}, "notifiers untouched")
				assert.Equal(t, paused, h.s.Paused(), "pause state untouched")
				assert.Equal(t, wd, [3]int{len(h.wd.rearms), len(h.wd.pauses), len(h.wd.resumes)}, "watchdog untouched")
				assert.EqualValues(t, 1, h.out().Rejected.Count(tc.reject)-before.Rejected.Count(tc.reject))
				return
			}
			require.NotNil(t, tc.check, "accepted rows check their effect")
			tc.check(t, h)
			var zero dispatch.Rejected
			assert.Equal(t, zero, h.out().Rejected, "an accepted frame counts no rejection")
		})
	}
}

// TestQueueBoundsHoldAcrossFeeds: the 64-entry budget is per run, not
// per feed or per batch (invariant 7).
func TestQueueBoundsHoldAcrossFeeds(t *testing.T) {
	h := newHarness()
	snrq := frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(1, 1, "t"))
	korq := frameWithCRC(wire.KernelOpRequest, kernelOpBytes(1, 1, 1, 1))
	for range 100 {
		h.feed(snrq)
		h.feed(korq)
	}
	assert.Len(t, h.out().SnapshotRequests, dispatch.MaxSnapshotRequests)
	assert.Len(t, h.out().KernelOps, dispatch.MaxKernelOps)
	assert.EqualValues(t, 2*(100-64), h.out().Rejected.Overflow)
}

// TestKADRFiresOnceAcrossFeeds (invariant 5 for KADR).
func TestKADRFiresOnceAcrossFeeds(t *testing.T) {
	h := newHarness()
	h.feed(frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(2, 3, 4)))
	h.feed(frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(20, 30, 40)))
	assert.Equal(t, &dispatch.KASLR{PhysBase: 1, PageOffsetBase: 3, TextAddr: 3}, h.out().KASLR, "the first KADR wins")
	assert.EqualValues(t, 1, h.physBase)
	assert.EqualValues(t, 1, h.kaslr)
	assert.EqualValues(t, 1, h.out().Rejected.OneshotRepeat)
}
