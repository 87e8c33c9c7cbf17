package dispatch

import (
	"math"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// Reason is why Dispatch rejected a frame. A rejected frame has no
// effect at all.
type Reason uint8

// Reject reasons, in the order a frame is judged (docs/protocol.md).
const (
	RejectNone          Reason = iota // accepted
	RejectCRC                         // payload CRC mismatch (torn)
	RejectPad                         // pad field not zero (torn)
	RejectUnknownTag                  // tag not in the gate table
	RejectForgedTag                   // host→guest tag seen on TX
	RejectShape                       // payload has the wrong shape for its tag
	RejectOneshotRepeat               // SRDY or KADR after the first accepted one
	RejectOverflow                    // SNRQ or KORQ queue bound reached
	RejectOutOfOrder                  // SCPP while paused, SCRR while not paused
)

// String returns the reason's name as used in the JSON outcome.
func (r Reason) String() string {
	switch r {
	case RejectNone:
		return "accepted"
	case RejectCRC:
		return "crc"
	case RejectPad:
		return "pad"
	case RejectUnknownTag:
		return "unknown_tag"
	case RejectForgedTag:
		return "forged_tag"
	case RejectShape:
		return "shape"
	case RejectOneshotRepeat:
		return "oneshot_repeat"
	case RejectOverflow:
		return "overflow"
	case RejectOutOfOrder:
		return "out_of_order"
	}
	return "invalid"
}

// Reasons lists every reject reason, in judging order.
func Reasons() []Reason {
	return []Reason{RejectCRC, RejectPad, RejectUnknownTag, RejectForgedTag, RejectShape,
		RejectOneshotRepeat, RejectOverflow, RejectOutOfOrder}
}

// Effect is what an accepted frame did, and so what it asks of whoever
// feeds the Session: a live run stops the guest on EffectKill, answers a
// snapshot on EffectSnapshotQueued and moves its watchdog on
// EffectScenarioStart, EffectWatchdogPause and EffectWatchdogResume;
// replay counts them. The Outcome records the same effects.
type Effect uint8

// Effects of accepted frames.
const (
	EffectNone           Effect = iota // rejected: nothing happened
	EffectBootComplete                 // SRDY: boot complete (Outcome.SysRdy)
	EffectKill                         // SCDX: kill flag set, kill signal counted, bucketed: stop the guest
	EffectSnapshotQueued               // SNRQ: appended to Outcome.SnapshotRequests
	EffectKernelOpQueued               // KORQ: appended to Outcome.KernelOps
	EffectKernelAddrs                  // KADR: Outcome.KASLR set
	EffectWatchdogPause                // SCPP: pause the watchdog
	EffectWatchdogResume               // SCRR: resume the watchdog (span added to Outcome)
	EffectStep                         // STEP: Outcome.Step set
	EffectScenarioStart                // SCST: scenario start recorded, bucketed: re-arm the watchdog
	EffectBucket                       // other verdict frame: bucketed
)

// String names the effect.
func (e Effect) String() string {
	switch e {
	case EffectNone:
		return "none"
	case EffectBootComplete:
		return "boot-complete"
	case EffectKill:
		return "kill"
	case EffectSnapshotQueued:
		return "snapshot-queued"
	case EffectKernelOpQueued:
		return "kernel-op-queued"
	case EffectKernelAddrs:
		return "kernel-addrs"
	case EffectWatchdogPause:
		return "watchdog-pause"
	case EffectWatchdogResume:
		return "watchdog-resume"
	case EffectStep:
		return "step"
	case EffectScenarioStart:
		return "scenario-start"
	case EffectBucket:
		return "bucket"
	}
	return "invalid"
}

// Result says what the gates did with one frame: exactly one of Effect
// and Reject is set.
type Result struct {
	Effect Effect
	Reject Reason
}

// Accepted reports whether the frame took effect.
func (r Result) Accepted() bool { return r.Reject == RejectNone }

func accept(e Effect) Result { return Result{Effect: e} }

func (s *sinks) reject(r Reason) Result {
	s.out.Rejected.add(r)
	return Result{Reject: r}
}

// dispatch applies the gate table (docs/protocol.md) to one frame. A
// frame is judged in this order and counted under the first reason that
// applies: crc, pad, unknown or forged tag, shape, then the tag's own
// state gate (one-shot, budget, pause order). A rejected frame has no
// effect at all. The switch below is the gate table, row by row; the
// budgets are in sinks.go. What an accepted frame asks of the world
// outside the Outcome (stop the guest, answer a snapshot, move the
// watchdog) is its Result's Effect, which the Session hands to its
// caller: that is the one channel by which effects leave dispatch.
func (s *sinks) dispatch(m *Message) Result {
	if !m.CRCOK && !(brokenGate && m.Tag == wire.SnapshotRequest) {
		return s.reject(RejectCRC)
	}
	if !m.PadOK {
		return s.reject(RejectPad)
	}
	p := m.Payload
	o := &s.out

	switch m.Tag {
	// SRDY: payload empty; first one only → boot complete, once.
	case wire.SysRdy:
		if len(p) != 0 {
			return s.reject(RejectShape)
		}
		if o.SysRdy {
			return s.reject(RejectOneshotRepeat)
		}
		o.SysRdy = true
		return accept(EffectBootComplete)

	// SCDX: verdict → set kill flag, +1 kill signal, bucket.
	case wire.SchedExit:
		o.Killed = true
		o.KillSignals++
		s.bucket(m)
		return accept(EffectKill)

	// SNRQ: exactly 72 bytes, kind 1|2, NUL-terminated UTF-8 tag; at
	// most 64 per run → push pending snapshot request.
	case wire.SnapshotRequest:
		req, err := wire.DecodeSnapshotRequest(p)
		if err != nil {
			return s.reject(RejectShape)
		}
		if len(o.SnapshotRequests) >= MaxSnapshotRequests {
			return s.reject(RejectOverflow)
		}
		o.SnapshotRequests = append(o.SnapshotRequests, SnapshotRequest{ID: req.RequestID, Kind: req.Kind, Tag: req.TagString()})
		return accept(EffectSnapshotQueued)

	// KORQ: exactly 24 bytes; at most 64 per run → push pending kernel op.
	case wire.KernelOpRequest:
		op, err := wire.DecodeKernelOpRequest(p)
		if err != nil {
			return s.reject(RejectShape)
		}
		if len(o.KernelOps) >= MaxKernelOps {
			return s.reject(RejectOverflow)
		}
		o.KernelOps = append(o.KernelOps, KernelOp{ID: op.RequestID, Op: op.Op, Arg: op.Arg, Arg2: op.Arg2})
		return accept(EffectKernelOpQueued)

	// KADR: exactly 24 bytes, both +1 fields non-zero; first one only →
	// store the addresses, KASLR known.
	case wire.KernelAddrs:
		k, err := wire.DecodeKernelAddrs(p)
		if err != nil {
			return s.reject(RejectShape)
		}
		if o.KASLR != nil {
			return s.reject(RejectOneshotRepeat)
		}
		o.KASLR = &KASLR{PhysBase: k.PhysBase(), PageOffsetBase: k.PageOffsetBase, TextAddr: k.TextAddr()}
		return accept(EffectKernelAddrs)

	// SCPP: payload empty; not already paused → pause the watchdog.
	case wire.WatchdogPause:
		if len(p) != 0 {
			return s.reject(RejectShape)
		}
		if s.paused {
			return s.reject(RejectOutOfOrder)
		}
		s.paused, s.pausedAt = true, s.now
		o.WatchdogPauses++
		return accept(EffectWatchdogPause)

	// SCRR: payload empty; paused → add the paused span, resume. The
	// span is the clock's advance (none if it went back) and the total
	// saturates at MaxInt64: a trace's forged times cannot wrap it.
	case wire.WatchdogResume:
		if len(p) != 0 {
			return s.reject(RejectShape)
		}
		if !s.paused {
			return s.reject(RejectOutOfOrder)
		}
		s.paused = false
		o.WatchdogPauseNS = addSpan(o.WatchdogPauseNS, s.pausedAt, s.now)
		return accept(EffectWatchdogResume)

	// STEP: exactly 2 bytes → set current step.
	case wire.Step:
		step, err := wire.DecodeStep(p)
		if err != nil {
			return s.reject(RejectShape)
		}
		o.Step = step
		return accept(EffectStep)

	// SCST: verdict → scenario start := run clock, re-arm the watchdog, bucket.
	case wire.ScenarioStart:
		s.scenarioStart = s.now
		s.bucket(m)
		return accept(EffectScenarioStart)

	// LIFE: exactly 1 byte, 1–4 → bucket.
	case wire.Lifecycle:
		if _, err := wire.DecodeLifecycle(p); err != nil {
			return s.reject(RejectShape)
		}
		s.bucket(m)
		return accept(EffectBucket)

	// Plain verdict frames → bucket.
	case wire.Scenario, wire.Stimulus, wire.StepEnd, wire.Exit, wire.TestResult, wire.Crash,
		wire.Stdout, wire.Stderr, wire.SchedLog, wire.PerfMetrics, wire.RawOutput,
		wire.ProbeRaw, wire.Dmesg, wire.ExitContext, wire.Probe, wire.GuestProfile:
		s.bucket(m)
		return accept(EffectBucket)

	// SNRP, KORP: host→guest only; forged if seen on TX.
	case wire.SnapshotReply, wire.KernelOpReply:
		return s.reject(RejectForgedTag)

	// Anything else: unknown.
	default:
		return s.reject(RejectUnknownTag)
	}
}

// addSpan returns total plus the time from from to to: nothing when to
// is not after from, and at most math.MaxInt64 in all.
func addSpan(total, from, to int64) int64 {
	if to <= from {
		return total
	}
	d := uint64(to) - uint64(from) // exact: to > from, so 0 < d < 2^64
	if d > uint64(math.MaxInt64-total) {
		return math.MaxInt64
	}
	return total + int64(d)
}
