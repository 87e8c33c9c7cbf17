package replay

import (
	"fmt"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
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

// engine drives one stream through the production Assembler and Dispatch
// and checks invariants 1–5, 7 and 8 frame by frame. Deliveries arrive
// with their recorded times; the clock a frame sees is the time of the
// delivery holding its last byte, so any re-split of the same deliveries
// sees the same clock.
type engine struct {
	a     *dispatch.Assembler
	sinks *dispatch.Sinks
	n     notifiers

	starts, times []int64 // recorded deliveries, for the clock
	fed           int64   // bytes registered as deliveries so far
	frameEnd      int64   // offset of the last byte of the frame being dispatched

	keepFrames bool
	frames     []FrameResult

	srdyAccepted, kadrAccepted int
	v                          *violations
}

type notifiers struct {
	kill, boot, physBase, kaslr dispatch.Counter
}

func newEngine(keepFrames bool, v *violations) *engine {
	e := &engine{a: dispatch.NewAssembler(), keepFrames: keepFrames, v: v}
	e.sinks = dispatch.NewSinks(dispatch.ClockFunc(func() int64 {
		return timeAt(e.starts, e.times, e.frameEnd)
	}))
	e.sinks.DigestOnly = true
	e.sinks.Kill, e.sinks.BootComplete = &e.n.kill, &e.n.boot
	e.sinks.PhysBase, e.sinks.KASLR = &e.n.physBase, &e.n.kaslr
	return e
}

// delivery registers a recorded delivery of n bytes received at t; its
// bytes are fed separately, split however the chunking says.
func (e *engine) delivery(t int64, n int) {
	e.starts = append(e.starts, e.fed)
	e.times = append(e.times, t)
	e.fed += int64(n)
}

// fingerprint is every observable effect of Dispatch, compared before
// and after each frame: a rejected or torn frame must change none of it.
type fingerprint struct {
	killed                bool
	killSignals           uint64
	sysRdy                bool
	snapshots, kernelOps  int
	kaslr                 bool
	step                  uint16
	pauses                uint64
	pauseNS               int64
	verdicts              int
	paused                bool
	scenarioStart         int64
	kill, boot, phys, kas dispatch.Counter
}

func (e *engine) fingerprint() fingerprint {
	o := &e.sinks.Outcome
	return fingerprint{
		killed: o.Killed, killSignals: o.KillSignals, sysRdy: o.SysRdy,
		snapshots: len(o.SnapshotRequests), kernelOps: len(o.KernelOps), kaslr: o.KASLR != nil,
		step: o.Step, pauses: o.WatchdogPauses, pauseNS: o.WatchdogPauseNS, verdicts: len(o.Verdicts),
		paused: e.sinks.Paused(), scenarioStart: e.sinks.ScenarioStart(),
		kill: e.n.kill, boot: e.n.boot, phys: e.n.physBase, kas: e.n.kaslr,
	}
}

// feed feeds one piece and dispatches every frame it completes.
func (e *engine) feed(p []byte) {
	e.a.Feed(p)
	for {
		m, ok := e.a.Next()
		if !ok {
			break
		}
		e.dispatch(&m)
	}
	if c := e.a.BufferCap(); c > dispatch.MaxBuffered {
		e.v.add(7, "assembler buffer grew to %d bytes, past the bound of %d", c, dispatch.MaxBuffered)
	}
}

func (e *engine) dispatch(m *dispatch.Message) {
	e.frameEnd = m.Offset + int64(wire.HeaderSize+len(m.Payload)) - 1
	before := e.fingerprint()
	res := dispatch.Dispatch(m, e.sinks)
	after := e.fingerprint()
	at := func() string { return fmt.Sprintf("frame %s at offset %d", m.Tag, m.Offset) }

	switch {
	case !m.Intact() && res.Accepted():
		e.v.add(1, "%s is torn (crc ok %v, pad ok %v) but was accepted", at(), m.CRCOK, m.PadOK)
	case !m.Intact() && after != before:
		e.v.add(1, "%s is torn but changed the run's state", at())
	case !res.Accepted() && after != before:
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
		if after.verdicts != before.verdicts {
			e.v.add(4, "%s is internal but entered the verdict bucket", at())
		}
	}
	if res.Accepted() {
		switch m.Tag {
		case wire.SysRdy:
			e.srdyAccepted++
			if e.srdyAccepted > 1 {
				e.v.add(5, "%s: SYS_RDY accepted %d times", at(), e.srdyAccepted)
			}
		case wire.KernelAddrs:
			e.kadrAccepted++
			if e.kadrAccepted > 1 {
				e.v.add(5, "%s: KADR accepted %d times", at(), e.kadrAccepted)
			}
		}
	}
	if n := len(e.sinks.Outcome.SnapshotRequests); n > dispatch.MaxSnapshotRequests {
		e.v.add(7, "%d snapshot requests accepted, past the bound of %d", n, dispatch.MaxSnapshotRequests)
	}
	if n := len(e.sinks.Outcome.KernelOps); n > dispatch.MaxKernelOps {
		e.v.add(7, "%d kernel ops accepted, past the bound of %d", n, dispatch.MaxKernelOps)
	}
	if e.keepFrames {
		e.frames = append(e.frames, FrameResult{
			Offset: m.Offset, Time: timeAt(e.starts, e.times, e.frameEnd), Tag: m.Tag, Len: len(m.Payload),
			CRCOK: m.CRCOK, PadOK: m.PadOK, Result: res,
		})
	}
}

// finish ends the stream and returns the outcome.
func (e *engine) finish() dispatch.Outcome {
	e.sinks.Outcome.SetStreamStats(e.a.Finish())
	return e.sinks.Outcome
}

// violations collects broken invariants, keeping the first few messages
// of each so a report stays readable on a pathological stream.
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

// runStream replays an in-memory stream with the given chunking, guarding
// against panics (invariant 8).
func runStream(s *Stream, c Chunking, keepFrames bool, v *violations) (out dispatch.Outcome, frames []FrameResult, st dispatch.Stats) {
	e := newEngine(keepFrames, v)
	defer func() {
		if r := recover(); r != nil {
			v.add(8, "panic while replaying: %v", r)
		}
	}()
	sp := newSplitter(c)
	for i := range s.Deliveries() {
		d := s.Delivery(i)
		e.delivery(s.Times[i], len(d))
		sp.split(d, e.feed)
	}
	sp.flush(e.feed)
	if c.Kind == ChunkWhole {
		e.feed(s.Data)
	}
	out = e.finish()
	return out, e.frames, e.a.Stats()
}
