package dispatch

import "github.com/ktstr/ktstr/dispatch/wire"

// Clock gives the run clock in nanoseconds: the time since the run
// started live, the recorded delivery timestamps in replay.
type Clock interface {
	Now() int64
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() int64

// Now calls f.
func (f ClockFunc) Now() int64 { return f() }

// Notifier is poked once per accepted effect it stands for. Live runs
// back it with eventfds; tests and replay count.
type Notifier interface {
	Notify()
}

// Counter is a Notifier that counts its notifications, like a
// non-blocking eventfd read back after the fact.
type Counter uint64

// Notify adds one.
func (c *Counter) Notify() { *c++ }

// Watchdog is the run watchdog a live run arms. Dispatch re-arms it on
// SCST, pauses it on SCPP and resumes it on SCRR, passing the run clock.
type Watchdog interface {
	Rearm(now int64)
	Pause(now int64)
	Resume(now int64)
}

// Queue bounds (invariant 7): the most snapshot requests and kernel ops
// accepted in one run, however the stream was split.
const (
	MaxSnapshotRequests = 64
	MaxKernelOps        = 64
)

// Sinks is where Dispatch puts the effects of accepted frames: the
// notifiers and watchdog a live run reacts to, and the Outcome that
// records every effect and rejection. One Sinks value lives for one run.
type Sinks struct {
	Clock        Clock    // run clock; nil reads as 0
	Kill         Notifier // each accepted SCDX; may be nil
	BootComplete Notifier // the first accepted SRDY; may be nil
	PhysBase     Notifier // the first accepted KADR; may be nil
	KASLR        Notifier // the first accepted KADR; may be nil
	Watchdog     Watchdog // may be nil

	// DigestOnly makes verdict entries keep only the SHA-256 of their
	// payload instead of a copy, so replaying a large trace keeps memory
	// bounded. Live runs keep the payloads (test results, output).
	DigestOnly bool

	// Outcome records what the run did. Dispatch owns it while the run
	// lasts; read it between calls.
	Outcome Outcome

	paused        bool  // SCPP accepted and not yet resumed
	pausedAt      int64 // run clock at the SCPP
	scenarioStart int64 // run clock at the last SCST

	// payloads holds the copies kept by bucketed verdicts, back to back,
	// so a verdict costs a copy and no allocation of its own. A full
	// chunk is left to the verdicts that point into it and a larger one
	// started; ReleaseVerdicts rewinds the current chunk for reuse.
	payloads []byte
}

// Verdict payload chunks grow from the first size to the last by
// doubling; a payload larger than the chunk gets a chunk of its size.
const (
	firstPayloadChunk = 4 << 10
	maxPayloadChunk   = 1 << 20
)

// ReleaseVerdicts empties the verdict bucket and lets later verdicts
// reuse the storage of the released payloads. A consumer that takes
// verdicts out while the run goes on (a live run streaming test results
// out) calls it once it has processed Outcome.Verdicts; the Payload
// slices of the released verdicts, and of any copy of the Outcome taken
// before, must not be used after it.
func (s *Sinks) ReleaseVerdicts() {
	clear(s.Outcome.Verdicts) // drop references into older chunks
	s.Outcome.Verdicts = s.Outcome.Verdicts[:0]
	s.payloads = s.payloads[:0]
}

// Room implements Keeper. For a frame Dispatch would bucket with its
// payload kept (a verdict tag, Sinks not DigestOnly) it lends the n
// bytes at the end of the payload chunk; keep then takes a payload that
// already lies there as it is. Room that is not kept is lent again.
func (s *Sinks) Room(tag wire.Tag, n int) []byte {
	if s.DigestOnly || n == 0 || tag.Class() != wire.Verdict {
		return nil
	}
	s.reserve(n)
	l := len(s.payloads)
	return s.payloads[l : l+n : l+n]
}

// reserve makes room for n more bytes in the payload chunk.
func (s *Sinks) reserve(n int) {
	if cap(s.payloads)-len(s.payloads) < n {
		size := min(max(2*cap(s.payloads), firstPayloadChunk), maxPayloadChunk)
		s.payloads = make([]byte, 0, max(size, n))
	}
}

// keep returns a copy of p in the payload chunk, capped at its length so
// an append to one verdict's payload cannot overwrite the next. When p
// is the room Room lent (the Assembler copied it there already), it is
// kept where it lies.
func (s *Sinks) keep(p []byte) []byte {
	if len(p) == 0 {
		return []byte{} // not nil: nil marks a digest-only verdict
	}
	n := len(s.payloads)
	if cap(s.payloads)-n >= len(p) && &s.payloads[n : n+1][0] == &p[0] {
		s.payloads = s.payloads[:n+len(p)]
		return p[:len(p):len(p)]
	}
	s.reserve(len(p))
	n = len(s.payloads)
	s.payloads = append(s.payloads, p...)
	return s.payloads[n:len(s.payloads):len(s.payloads)]
}

// NewSinks returns Sinks reading time from clock, with no notifiers.
func NewSinks(clock Clock) *Sinks {
	return &Sinks{Clock: clock, Outcome: NewOutcome()}
}

// ScenarioStart returns the run clock of the last accepted SCST, or 0.
func (s *Sinks) ScenarioStart() int64 { return s.scenarioStart }

// Paused reports whether the watchdog is paused by an SCPP not yet
// resumed.
func (s *Sinks) Paused() bool { return s.paused }

func (s *Sinks) now() int64 {
	if s.Clock == nil {
		return 0
	}
	return s.Clock.Now()
}

func notify(n Notifier) {
	if n != nil {
		n.Notify()
	}
}
