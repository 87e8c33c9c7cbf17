package dispatch

// DispatchMessage judges one already-framed message, as a Session does
// for the frames it assembles, at run clock now. It exists for the
// ported seed tests, which build their messages by hand; only tests of
// this package can reach it.
func DispatchMessage(s *Session, m *Message, now int64) Result {
	s.s.now = now
	return s.s.dispatch(m)
}
