package dispatch

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// Budgets of the gate table (invariant 7): the most snapshot requests,
// kernel ops and verdict entries one run keeps, however the stream was
// split. They are part of the gates: a frame past a queue budget is
// rejected as overflow; a verdict past MaxVerdicts keeps its row's
// effect but no entry (it is folded into Outcome.VerdictsDroppedSHA256).
const (
	MaxSnapshotRequests = 64
	MaxKernelOps        = 64
	MaxVerdicts         = 65536
)

// sinks is where the gates put the effects of accepted frames: the
// Outcome, and the state the gates read back (the pause, the last
// scenario start, the digest of dropped verdicts). It holds nothing
// whose size a guest chooses beyond the budgets above.
type sinks struct {
	out           Outcome
	now           int64 // run clock of the frame being dispatched
	paused        bool  // SCPP accepted and not yet resumed
	pausedAt      int64 // run clock at the SCPP
	scenarioStart int64 // run clock at the last SCST

	// dropped digests every verdict past MaxVerdicts. Small records are
	// gathered in dropBuf first: one Write per frame through the
	// hash.Hash interface would cost more than the SHA-256 itself.
	dropped hash.Hash
	dropBuf [dropBufSize]byte
	dropLen int
}

// dropBufSize is the gather buffer of dropped verdicts; dropHead is the
// tag u32 and len u32 that start each dropped verdict's record.
const (
	dropBufSize = 4096
	dropHead    = 8
)

func newSinks() sinks {
	return sinks{out: NewOutcome(), dropped: sha256.New()}
}

// bucket keeps a verdict entry for m while the budget lasts; past it the
// verdict is counted and folded into the dropped digest, in stream order.
func (s *sinks) bucket(m *Message) {
	if len(s.out.Verdicts) < MaxVerdicts {
		s.out.Verdicts = append(s.out.Verdicts, NewVerdict(m.Tag, m.Payload))
		return
	}
	s.out.VerdictsDropped++
	if dropHead+len(m.Payload) > dropBufSize-s.dropLen {
		s.flushDropped()
	}
	b := s.dropBuf[s.dropLen:]
	binary.LittleEndian.PutUint32(b[0:4], uint32(m.Tag))
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(m.Payload)))
	if dropHead+len(m.Payload) <= len(b) {
		s.dropLen += dropHead + copy(b[dropHead:], m.Payload)
		return
	}
	s.dropLen += dropHead
	s.flushDropped()
	s.dropped.Write(m.Payload)
}

func (s *sinks) flushDropped() {
	s.dropped.Write(s.dropBuf[:s.dropLen])
	s.dropLen = 0
}

// droppedSum returns the digest of the verdicts dropped so far without
// ending it.
func (s *sinks) droppedSum() Digest {
	s.flushDropped()
	var d Digest
	s.dropped.Sum(d[:0])
	return d
}
