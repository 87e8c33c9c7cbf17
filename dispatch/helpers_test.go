package dispatch_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
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

// harness drives the production gates through a Session and counts
// each Result's effect, as a live run acts on it: the notifiers of the
// Rust original (kill, boot complete, phys base, KASLR) and the
// watchdog calls, each stamped with the harness clock.
type harness struct {
	kill, bootComplete, physBase, kaslr int
	wd                                  fakeWatchdog
	now                                 int64
	s                                   *dispatch.Session
}

type fakeWatchdog struct {
	rearms, pauses, resumes []int64
}

func newHarness() *harness {
	return &harness{s: dispatch.NewSession()}
}

// note acts on one Result as the live coordinator does.
func (h *harness) note(r dispatch.Result) {
	switch r.Effect {
	case dispatch.EffectKill:
		h.kill++
	case dispatch.EffectBootComplete:
		h.bootComplete++
	case dispatch.EffectKernelAddrs:
		h.physBase++
		h.kaslr++
	case dispatch.EffectScenarioStart:
		h.wd.rearms = append(h.wd.rearms, h.now)
	case dispatch.EffectWatchdogPause:
		h.wd.pauses = append(h.wd.pauses, h.now)
	case dispatch.EffectWatchdogResume:
		h.wd.resumes = append(h.wd.resumes, h.now)
	}
}

// run dispatches every message and returns the results.
func (h *harness) run(msgs []dispatch.Message) []dispatch.Result {
	res := make([]dispatch.Result, len(msgs))
	for i := range msgs {
		res[i] = dispatch.DispatchMessage(h.s, &msgs[i], h.now)
		h.note(res[i])
	}
	return res
}

// feed feeds p to the harness's Session at the harness clock.
func (h *harness) feed(p []byte) []dispatch.Result {
	var res []dispatch.Result
	h.s.Feed(h.now, p, func(_ *dispatch.Message, r dispatch.Result) {
		h.note(r)
		res = append(res, r)
	})
	return res
}

// runDispatch is the one-call form used by the ported seed tests.
func runDispatch(msgs []dispatch.Message) *harness {
	h := newHarness()
	h.run(msgs)
	return h
}

func (h *harness) out() *dispatch.Outcome     { return h.s.Outcome() }
func (h *harness) bucket() []dispatch.Verdict { return h.out().Verdicts }
func (h *harness) killed() bool               { return h.out().Killed }
func (h *harness) sysRdyRemaining() bool      { return !h.out().SysRdy }
func (h *harness) snapshotPending() int       { return len(h.out().SnapshotRequests) }

// dispatchStream feeds p whole into a fresh assembler and dispatches
// everything, returning the harness and the finished stream stats.
func dispatchStream(t *testing.T, p []byte) *harness {
	t.Helper()
	h := newHarness()
	h.feed(p)
	require.LessOrEqual(t, h.s.BufferCap(), dispatch.MaxBuffered)
	h.s.Finish()
	return h
}

// assertHolds asserts that verdict v stands for payload: the entry keeps
// its length and digest (the Rust original kept the bytes themselves).
func assertHolds(t *testing.T, v dispatch.Verdict, payload []byte) {
	t.Helper()
	assert.Equal(t, len(payload), v.Len, "verdict length")
	assert.Equal(t, dispatch.Digest(sha256.Sum256(payload)), v.SHA256, "verdict digest of %q", payload)
}
