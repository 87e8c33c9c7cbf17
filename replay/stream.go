// Package replay feeds recorded bulk-port bytes through the identical
// dispatch.Assembler and dispatch.Dispatch a live run uses, with the
// recorded timestamps as the clock, and checks the result: that it
// reproduces the live outcome (invariant 9), that the independent
// reference model agrees (invariant 10), and that the safety invariants
// 1–8 of docs/protocol.md hold. It also turns one stream into many torn
// and forged mutants and checks each the same way.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) replay takes the tap's recording as its bytes and wires the
// sinks to counters.
package replay

import (
	"sort"
)

// Stream is a TX byte stream held in memory with the deliveries it
// arrived in: delivery i starts at byte Starts[i] and was received at
// run-clock time Times[i] (ns).
type Stream struct {
	Data   []byte
	Starts []int64
	Times  []int64
}

// Append adds one delivery received at time t.
func (s *Stream) Append(t int64, b []byte) {
	s.Starts = append(s.Starts, int64(len(s.Data)))
	s.Times = append(s.Times, t)
	s.Data = append(s.Data, b...)
}

// Deliveries returns the number of deliveries.
func (s *Stream) Deliveries() int { return len(s.Starts) }

// Delivery returns the bytes of delivery i.
func (s *Stream) Delivery(i int) []byte {
	end := int64(len(s.Data))
	if i+1 < len(s.Starts) {
		end = s.Starts[i+1]
	}
	return s.Data[s.Starts[i]:end]
}

// TimeAt returns the time of the delivery holding byte offset off: a
// frame takes the time of the delivery that completed it, however the
// bytes are later re-split.
func (s *Stream) TimeAt(off int64) int64 {
	return timeAt(s.Starts, s.Times, off)
}

func timeAt(starts, times []int64, off int64) int64 {
	i := sort.Search(len(starts), func(i int) bool { return starts[i] > off }) - 1
	if i < 0 {
		return 0
	}
	return times[i]
}
