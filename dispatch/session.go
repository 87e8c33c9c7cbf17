package dispatch

// Session is one run's dispatch: the Assembler that frames the bulk
// port's TX bytes, the gates that judge each frame, the Outcome they
// build, the run clock the gates read and the budgets that bound it all.
// Every path that turns bytes into an outcome feeds a Session: the live
// coordinator, replay, `ktstr trace`, the mutation campaign and the fuzz
// targets. There is no other way to dispatch a frame.
//
// A Session holds at most MaxBuffered bytes of stream, MaxVerdicts
// verdict entries and the two request queues, whatever it is fed.
//
// The zero value is not ready for use; call NewSession.
type Session struct {
	asm      Assembler
	s        sinks
	m        Message // the frame being dispatched: a field, so handing it out costs no allocation
	finished bool
}

// FrameFunc receives each frame a Feed completes and what the gates did
// with it. m and its Payload are valid only during the call.
type FrameFunc func(m *Message, r Result)

// Mark says that the bytes of a joined piece from Off on were delivered
// at Time (see FeedJoined).
type Mark struct {
	Off  int   // offset into the piece
	Time int64 // run clock of that delivery, ns
}

// NewSession returns a Session at stream offset 0 and run clock 0.
func NewSession() *Session {
	return &Session{asm: Assembler{queue: make([][]byte, 0, 2)}, s: newSinks()}
}

// Feed hands the Session b, delivered at run clock t, and calls fn (which
// may be nil) with every frame b completes, in stream order, after the
// gates have judged it. A frame's clock (Message.Time) is the time of
// the delivery holding its last byte. The Session keeps no reference to
// b once Feed returns. Feed after Finish does nothing.
func (s *Session) Feed(t int64, b []byte, fn FrameFunc) {
	if s.finished {
		return
	}
	s.asm.Feed(b)
	s.s.now = t
	for {
		var ok bool
		if s.m, ok = s.asm.Next(); !ok {
			return
		}
		s.m.Time = t
		r := s.s.dispatch(&s.m)
		if fn != nil {
			fn(&s.m, r)
		}
	}
}

// FeedJoined is Feed for a piece that joins the bytes of several
// deliveries, as a replay re-splitting a trace may feed: marks, in
// increasing Off order and starting at Off 0, give each delivery's
// time. A frame's clock is still the time of the delivery holding its
// last byte.
func (s *Session) FeedJoined(b []byte, marks []Mark, fn FrameFunc) {
	if s.finished || len(b) == 0 {
		return
	}
	base := s.asm.pos + int64(s.asm.Buffered()) // stream offset of b[0]
	s.asm.Feed(b)
	k := 0
	for {
		var ok bool
		if s.m, ok = s.asm.Next(); !ok {
			return
		}
		m := &s.m
		last := m.Offset + int64(len(m.Payload)) + 15 - base // offset of its last byte in b
		for k+1 < len(marks) && int64(marks[k+1].Off) <= last {
			k++
		}
		if len(marks) > 0 {
			s.s.now = marks[k].Time
		}
		m.Time = s.s.now
		r := s.s.dispatch(m)
		if fn != nil {
			fn(m, r)
		}
	}
}

// Finish ends the stream: what the Assembler still holds counts as the
// truncated tail, the stream counters and the dropped-verdict digest
// are written into the Outcome, and the Outcome is returned. Later calls
// return the same Outcome.
func (s *Session) Finish() Outcome {
	if !s.finished {
		s.finished = true
		s.s.out.SetStreamStats(s.asm.Finish())
		s.s.out.VerdictsDroppedSHA256 = s.s.droppedSum()
	}
	return s.s.out
}

// Reset makes s a new Session at stream offset 0, keeping the capacity
// of its buffers, so that a caller running many streams (a fuzz target,
// a mutation campaign) allocates once. The Outcome of the last Finish
// shares its verdict storage with s: do not use it after Reset.
func (s *Session) Reset() {
	v := s.s.out.Verdicts[:0]
	s.asm.Reset()
	s.s.dropped.Reset()
	s.s = sinks{out: NewOutcome(), dropped: s.s.dropped}
	s.s.out.Verdicts = v
	s.finished = false
}

// Outcome returns the outcome so far, for reading between calls (a
// progress display, an invariant check). Its stream counters and dropped
// digest are current only after Finish. The Session goes on owning it.
func (s *Session) Outcome() *Outcome { return &s.s.out }

// Stats returns the Assembler's counts so far.
func (s *Session) Stats() Stats { return s.asm.Stats() }

// Buffered returns the bytes of stream the Session holds between calls.
func (s *Session) Buffered() int { return s.asm.Buffered() }

// BufferCap returns the capacity of the Session's stream buffer; it
// never exceeds MaxBuffered.
func (s *Session) BufferCap() int { return s.asm.BufferCap() }

// ScenarioStart returns the run clock of the last accepted SCST, or 0.
func (s *Session) ScenarioStart() int64 { return s.s.scenarioStart }

// Paused reports whether an accepted SCPP awaits its SCRR.
func (s *Session) Paused() bool { return s.s.paused }
