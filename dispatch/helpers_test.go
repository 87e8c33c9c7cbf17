package dispatch_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// frameWithCRC builds an intact frame.
func frameWithCRC(tag wire.Tag, payload []byte) []byte {
	return wire.AppendFrame(nil, tag, payload)
}

// frameWithTornCRC builds a frame whose crc has every bit flipped, so
// the mismatch is total rather than a near miss.
func frameWithTornCRC(tag wire.Tag, payload []byte) []byte {
	b := wire.AppendHeader(nil, wire.Header{Tag: tag, Len: uint32(len(payload)), CRC: wire.Checksum(payload) ^ 0xFFFFFFFF})
	return append(b, payload...)
}

// frameWithPad builds a frame with a correct crc and a non-zero pad.
func frameWithPad(tag wire.Tag, payload []byte, pad uint32) []byte {
	b := wire.AppendHeader(nil, wire.Header{Tag: tag, Len: uint32(len(payload)), CRC: wire.Checksum(payload), Pad: pad})
	return append(b, payload...)
}

// snapshotRequestBytes is the wire form of an SNRQ payload.
func snapshotRequestBytes(id, kind uint32, tag string) []byte {
	r := wire.NewSnapshotRequest(id, kind, tag)
	b, _ := r.AppendBinary(nil)
	return b
}

func kernelOpBytes(id, op uint32, arg, arg2 uint64) []byte {
	r := wire.KernelOpRequestPayload{RequestID: id, Op: op, Arg: arg, Arg2: arg2}
	b, _ := r.AppendBinary(nil)
	return b
}

func kernelAddrsBytes(plus1Phys, pageOffset, plus1Text uint64) []byte {
	k := wire.KernelAddrsPayload{PhysBasePlus1: plus1Phys, PageOffsetBase: pageOffset, TextAddrPlus1: plus1Text}
	b, _ := k.AppendBinary(nil)
	return b
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// feed feeds p and drains every complete message, copying payloads so
// they outlive the Assembler's buffers (the drained batch of the Rust
// original).
func feed(a *dispatch.Assembler, p []byte) []dispatch.Message {
	a.Feed(p)
	var out []dispatch.Message
	for {
		m, ok := a.Next()
		if !ok {
			return out
		}
		m.Payload = bytes.Clone(m.Payload)
		out = append(out, m)
	}
}

// harness owns every sink a Sinks value points at, so a test can drive
// the production Dispatch and then read the post-state.
type harness struct {
	kill, bootComplete, physBase, kaslr dispatch.Counter
	wd                                  fakeWatchdog
	now                                 int64
	sinks                               *dispatch.Sinks
}

type fakeWatchdog struct {
	rearms, pauses, resumes []int64
}

func (w *fakeWatchdog) Rearm(now int64)  { w.rearms = append(w.rearms, now) }
func (w *fakeWatchdog) Pause(now int64)  { w.pauses = append(w.pauses, now) }
func (w *fakeWatchdog) Resume(now int64) { w.resumes = append(w.resumes, now) }

func newHarness() *harness {
	h := &harness{}
	s := dispatch.NewSinks(dispatch.ClockFunc(func() int64 { return h.now }))
	s.Kill, s.BootComplete, s.PhysBase, s.KASLR = &h.kill, &h.bootComplete, &h.physBase, &h.kaslr
	s.Watchdog = &h.wd
	h.sinks = s
	return h
}

// run dispatches every message and returns the results.
func (h *harness) run(msgs []dispatch.Message) []dispatch.Result {
	res := make([]dispatch.Result, len(msgs))
	for i := range msgs {
		res[i] = dispatch.Dispatch(&msgs[i], h.sinks)
	}
	return res
}

// runDispatch is the one-call form used by the ported seed tests.
func runDispatch(msgs []dispatch.Message) *harness {
	h := newHarness()
	h.run(msgs)
	return h
}

func (h *harness) bucket() []dispatch.Verdict { return h.sinks.Outcome.Verdicts }
func (h *harness) killed() bool               { return h.sinks.Outcome.Killed }
func (h *harness) sysRdyRemaining() bool      { return !h.sinks.Outcome.SysRdy }
func (h *harness) snapshotPending() int       { return len(h.sinks.Outcome.SnapshotRequests) }

// dispatchStream feeds p whole into a fresh assembler and dispatches
// everything, returning the harness and the finished stream stats.
func dispatchStream(t *testing.T, p []byte) *harness {
	t.Helper()
	a := dispatch.NewAssembler()
	h := newHarness()
	h.run(feed(a, p))
	h.sinks.Outcome.SetStreamStats(a.Finish())
	require.LessOrEqual(t, a.BufferCap(), dispatch.MaxBuffered)
	return h
}
