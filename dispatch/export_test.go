package dispatch

// DispatchMessage judges one already-framed message, as a Session does
// for the frames it assembles, at run clock now. It exists for the
// ported seed tests, which build their messages by hand; only tests of
// this package can reach it.
func DispatchMessage(s *Session, m *Message, now int64) Result {
	s.s.now = now
	return s.s.dispatch(m)
}

// FillVerdicts makes s's verdict bucket full, as MaxVerdicts accepted
// verdict frames would, without feeding them: a fuzz target that starts
// every input past the budget cannot afford 65536 frames an execution.
func FillVerdicts(s *Session) {
	if cap(s.s.out.Verdicts) < MaxVerdicts {
		s.s.out.Verdicts = make([]Verdict, MaxVerdicts)
	}
	s.s.out.Verdicts = s.s.out.Verdicts[:MaxVerdicts]
}
