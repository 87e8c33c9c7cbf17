package dispatch_test

import (
	"fmt"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// A guest's TX bytes arrive in pieces that split frames anywhere. The
// Assembler frames them; Dispatch judges each frame against the gate
// table and records what it did in the Sinks' Outcome. A torn frame (its
// payload no longer matches its CRC) has no effect at all.
func Example() {
	var stream []byte
	stream = wire.AppendFrame(stream, wire.SysRdy, nil)
	stream = wire.AppendFrame(stream, wire.Stimulus, []byte("workers=4"))
	torn := wire.AppendFrame(nil, wire.SchedExit, []byte{9, 0, 0, 0})
	torn[len(torn)-1] ^= 0x80 // one bit flipped in flight
	stream = append(stream, torn...)
	stream = wire.AppendFrame(stream, wire.SchedExit, []byte{0, 0, 0, 0})

	a := dispatch.NewAssembler()
	s := dispatch.NewSinks(nil)
	a.SetKeeper(s) // kept payloads are copied as their CRC is checked
	for _, piece := range [][]byte{stream[:21], stream[21:50], stream[50:]} {
		a.Feed(piece)
		for {
			m, ok := a.Next()
			if !ok {
				break
			}
			r := dispatch.Dispatch(&m, s)
			fmt.Printf("%s at %d: %s %s\n", m.Tag, m.Offset, r.Effect, r.Reject)
		}
	}
	s.Outcome.SetStreamStats(a.Finish())
	o := &s.Outcome
	fmt.Printf("killed %v by %d SCDX, %d verdicts, %d torn\n", o.Killed, o.KillSignals, len(o.Verdicts), o.Rejected.CRC)
	// Output:
	// SRDY at 0: boot-complete accepted
	// STIM at 16: bucket accepted
	// SCDX at 41: none crc
	// SCDX at 61: kill accepted
	// killed true by 1 SCDX, 2 verdicts, 1 torn
}
