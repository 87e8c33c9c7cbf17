package dispatch_test

import (
	"fmt"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// A guest's TX bytes arrive in pieces that split frames anywhere. A
// Session frames them, judges each frame against the gate table, hands
// the caller each frame with its Result, and records what it did in the
// Outcome. A torn frame (its payload no longer matches its CRC) has no
// effect at all.
func Example() {
	var stream []byte
	stream = wire.AppendFrame(stream, wire.SysRdy, nil)
	stream = wire.AppendFrame(stream, wire.Stimulus, []byte("workers=4"))
	torn := wire.AppendFrame(nil, wire.SchedExit, []byte{9, 0, 0, 0})
	torn[len(torn)-1] ^= 0x80 // one bit flipped in flight
	stream = append(stream, torn...)
	stream = wire.AppendFrame(stream, wire.SchedExit, []byte{0, 0, 0, 0})

	s := dispatch.NewSession()
	show := func(m *dispatch.Message, r dispatch.Result) {
		fmt.Printf("%s at %d, t=%d: %s %s\n", m.Tag, m.Offset, m.Time, r.Effect, r.Reject)
	}
	for i, piece := range [][]byte{stream[:21], stream[21:50], stream[50:]} {
		s.Feed(int64(i)*10, piece, show) // delivered at t = 0, 10, 20
	}
	o := s.Finish()
	fmt.Printf("killed %v by %d SCDX, %d verdicts, %d torn\n", o.Killed, o.KillSignals, len(o.Verdicts), o.Rejected.CRC)
	// Output:
	// SRDY at 0, t=0: boot-complete accepted
	// STIM at 16, t=10: bucket accepted
	// SCDX at 41, t=20: none crc
	// SCDX at 61, t=20: kill accepted
	// killed true by 1 SCDX, 2 verdicts, 1 torn
}
