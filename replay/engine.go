package replay

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay/model"
)

// FrameResult is what happened to one frame in a replay.
type FrameResult struct {
	Offset int64
	Time   int64
	Tag    wire.Tag
	Len    int
	CRCOK  bool
	PadOK  bool
	Result dispatch.Result
}

// engine drives one stream through a dispatch.Session, the same one a
// live run feeds, and checks invariants 1–5, 7 and 8 frame by frame from
// what the Session hands back. Its own state is a fixed set of counters:
// it holds nothing per frame or per delivery unless keepFrames asks for
// the frame list (an in-memory stream's model check).
type engine struct {
	s       *dispatch.Session
	onFrame dispatch.FrameFunc // e.frame, bound once so feeding allocates nothing
	last    fingerprint        // the state after the previous frame

	effects [dispatch.EffectBucket + 1]uint64 // accepted frames per effect, as a live run acts on them
	// verdictsAccepted counts accepted verdict-class frames: each must
	// be a kept entry or a dropped one (every verdict in one digest).
	verdictsAccepted uint64

	// With expect set (an in-memory stream's model check), each frame is
	// compared with the model's as it comes, so neither side's frame list
	// is held twice. seq digests the frame sequence for the split check.
	expect    []model.Frame
	framed    int
	modelDiff string // the first frame the model disagrees on, described
	seq       hash.Hash64

	v *violations
}

func newEngine(expect []model.Frame, v *violations) *engine {
	e := &engine{s: dispatch.NewSession(), expect: expect, v: v, seq: fnv.New64a()}
	e.onFrame = e.frame
	e.last = e.fingerprint()
	return e
}

// fingerprint is every observable effect of the gates, compared from
// one frame to the next: a rejected or torn frame must change none of it.
type fingerprint struct {
	killed               bool
	killSignals          uint64
	sysRdy               bool
	snapshots, kernelOps int
	kaslr                bool
	step                 uint16
	pauses               uint64
	pauseNS              int64
	verdicts             int
	dropped              uint64
	paused               bool
	scenarioStart        int64
}

func (e *engine) fingerprint() fingerprint {
	o := e.s.Outcome()
	return fingerprint{
		killed: o.Killed, killSignals: o.KillSignals, sysRdy: o.SysRdy,
		snapshots: len(o.SnapshotRequests), kernelOps: len(o.KernelOps), kaslr: o.KASLR != nil,
		step: o.Step, pauses: o.WatchdogPauses, pauseNS: o.WatchdogPauseNS,
		verdicts: len(o.Verdicts), dropped: o.VerdictsDropped,
		paused: e.s.Paused(), scenarioStart: e.s.ScenarioStart(),
	}
}

// feed feeds one piece delivered at t.
func (e *engine) feed(t int64, p []byte) {
	e.s.Feed(t, p, e.onFrame)
	e.checkBuffer()
}

// feedJoined feeds a piece joining several deliveries.
func (e *engine) feedJoined(p []byte, marks []dispatch.Mark) {
	e.s.FeedJoined(p, marks, e.onFrame)
	e.checkBuffer()
}

func (e *engine) checkBuffer() {
	if c := e.s.BufferCap(); c > dispatch.MaxBuffered {
		e.v.add(7, "assembler buffer grew to %d bytes, past the bound of %d", c, dispatch.MaxBuffered)
	}
}

// frame checks one frame the Session judged.
func (e *engine) frame(m *dispatch.Message, res dispatch.Result) {
	before := e.last
	after := e.fingerprint()
	e.last = after
	at := func() string { return fmt.Sprintf("frame %s at offset %d", m.Tag, m.Offset) }

	switch {
	case !m.Intact() && res.Accepted():
		e.v.add(1, "%s is torn (crc ok %v, pad ok %v) but was accepted", at(), m.CRCOK, m.PadOK)
	case !m.Intact() && after != before:
		e.v.add(1, "%s is torn but changed the run's state", at())
	case !res.Accepted() && (after != before || res.Effect != dispatch.EffectNone):
		e.v.add(1, "%s was rejected (%s) but changed the run's state", at(), res.Reject)
	}
	switch m.Tag.Class() {
	case wire.HostToGuest:
		if res.Accepted() || after != before {
			e.v.add(2, "%s is host→guest only but took effect on TX", at())
		}
	case wire.Unknown:
		if res.Accepted() || after != before {
			e.v.add(3, "%s has an unknown tag but took effect", at())
		}
	case wire.Internal:
		if after.verdicts != before.verdicts || after.dropped != before.dropped {
			e.v.add(4, "%s is internal but entered the verdict bucket", at())
		}
	case wire.Verdict:
		if res.Accepted() {
			e.verdictsAccepted++
		}
	}
	if res.Accepted() && int(res.Effect) < len(e.effects) {
		e.effects[res.Effect]++
		switch {
		case res.Effect == dispatch.EffectBootComplete && e.effects[res.Effect] > 1:
			e.v.add(5, "%s: SYS_RDY accepted %d times", at(), e.effects[res.Effect])
		case res.Effect == dispatch.EffectKernelAddrs && e.effects[res.Effect] > 1:
			e.v.add(5, "%s: KADR accepted %d times", at(), e.effects[res.Effect])
		}
	}
	if after.snapshots > dispatch.MaxSnapshotRequests {
		e.v.add(7, "%d snapshot requests accepted, past the bound of %d", after.snapshots, dispatch.MaxSnapshotRequests)
	}
	if after.kernelOps > dispatch.MaxKernelOps {
		e.v.add(7, "%d kernel ops accepted, past the bound of %d", after.kernelOps, dispatch.MaxKernelOps)
	}
	if after.verdicts > dispatch.MaxVerdicts {
		e.v.add(7, "%d verdict entries kept, past the budget of %d", after.verdicts, dispatch.MaxVerdicts)
	}
	if e.expect != nil {
		e.compare(FrameResult{Offset: m.Offset, Time: m.Time, Tag: m.Tag, Len: len(m.Payload), CRCOK: m.CRCOK, PadOK: m.PadOK, Result: res})
	}
}

// compare checks frame f against the model's frame of the same index and
// folds it into the sequence digest.
func (e *engine) compare(f FrameResult) {
	i := e.framed
	e.framed++
	var b [8 + 8 + 4 + 4 + 4]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(f.Offset))
	binary.LittleEndian.PutUint64(b[8:], uint64(f.Time))
	binary.LittleEndian.PutUint32(b[16:], uint32(f.Tag))
	binary.LittleEndian.PutUint32(b[20:], uint32(f.Len))
	b[24], b[25], b[26], b[27] = boolByte(f.CRCOK), boolByte(f.PadOK), byte(f.Result.Effect), byte(f.Result.Reject)
	e.seq.Write(b[:])
	if e.modelDiff != "" || i >= len(e.expect) {
		return
	}
	g := e.expect[i]
	verdict := ""
	if !f.Result.Accepted() {
		verdict = f.Result.Reject.String()
	}
	if f.Offset != g.Offset || uint32(f.Tag) != g.Tag || uint32(f.Len) != g.Len || f.CRCOK != g.CRCOK ||
		f.PadOK != g.PadOK || verdict != g.Verdict || f.Time != g.Time {
		e.modelDiff = fmt.Sprintf("frame %d at offset %d: streaming path says %s/%d bytes/%s at t=%d, the model says %s/%d bytes/%s at t=%d",
			i, f.Offset, f.Tag, f.Len, orAccepted(verdict), f.Time, wire.Tag(g.Tag), g.Len, orAccepted(g.Verdict), g.Time)
	}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// finish ends the stream and returns the outcome, checking that every
// accepted verdict is covered by exactly one digest: a kept entry's or
// the dropped-verdict digest.
func (e *engine) finish() dispatch.Outcome {
	out := e.s.Finish()
	if kept := uint64(len(out.Verdicts)); kept+out.VerdictsDropped != e.verdictsAccepted {
		e.v.add(7, "%d verdicts accepted, but %d kept and %d dropped", e.verdictsAccepted, kept, out.VerdictsDropped)
	}
	if out.VerdictsDropped == 0 && out.VerdictsDroppedSHA256 != dispatch.EmptyDigest() {
		e.v.add(7, "no verdict dropped, yet the dropped-verdict digest is %s", out.VerdictsDroppedSHA256)
	}
	return out
}

// violations collects broken invariants, keeping the first few messages
// of each so a report stays readable (and bounded) on a pathological
// stream.
type violations struct {
	list  []string
	count map[int]int
}

const maxPerInvariant = 10

func (v *violations) add(inv int, format string, a ...any) {
	if v.count == nil {
		v.count = map[int]int{}
	}
	v.count[inv]++
	if v.count[inv] <= maxPerInvariant {
		v.list = append(v.list, fmt.Sprintf("invariant %d: ", inv)+fmt.Sprintf(format, a...))
	} else if v.count[inv] == maxPerInvariant+1 {
		v.list = append(v.list, fmt.Sprintf("invariant %d: further violations not listed", inv))
	}
}

func (v *violations) empty() bool { return len(v.list) == 0 }

// streamRun is what one pass over an in-memory stream gave.
type streamRun struct {
	out       dispatch.Outcome
	st        dispatch.Stats
	framed    int    // frames seen
	modelDiff string // the first frame the model disagrees on, or ""
	seq       uint64 // digest of the frame sequence
}

// runStream replays an in-memory stream with the given chunking, guarding
// against panics (invariant 8); with expect, it compares every frame
// with the model's.
func runStream(s *Stream, c Chunking, expect []model.Frame, v *violations) (r streamRun) {
	e := newEngine(expect, v)
	defer func() {
		if p := recover(); p != nil {
			v.add(8, "panic while replaying: %v", p)
		}
	}()
	if c.Kind == ChunkWhole {
		marks := make([]dispatch.Mark, s.Deliveries())
		for i := range marks {
			marks[i] = dispatch.Mark{Off: int(s.Starts[i]), Time: s.Times[i]}
		}
		e.feedJoined(s.Data, marks)
	} else {
		sp := newSplitter(c, e)
		for i := range s.Deliveries() {
			sp.split(s.Times[i], s.Delivery(i))
		}
		sp.flush()
	}
	r.out = e.finish()
	r.st, r.framed, r.modelDiff, r.seq = e.s.Stats(), e.framed, e.modelDiff, e.seq.Sum64()
	return r
}
