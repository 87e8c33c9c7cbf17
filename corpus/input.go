package corpus

import (
	"encoding/binary"

	"github.com/ktstr/ktstr/replay"
)

// SeedTime is the run-clock spacing, in ns, that Seed.Stream gives the
// deliveries of a seed stream: delivery i arrives at (i+1)·SeedTime.
const SeedTime = 1000

// Stream returns the seed as a replay stream, delivery i received at
// run-clock time (i+1)·SeedTime.
func (s Seed) Stream() *replay.Stream {
	st := &replay.Stream{}
	for i, d := range s.Deliveries {
		st.Append(int64(i+1)*SeedTime, d)
	}
	return st
}

// A FuzzDispatch input is a delivery table followed by the TX stream:
//
//	uvarint  n                  number of table entries
//	n × {
//	  uvarint  len              bytes in this delivery
//	  varint   dt               its arrival time minus the previous one's (ns; zig-zag)
//	}
//	...                         the stream: every byte after the table
//
// Delivery i holds the next len bytes of the stream, cut short where the
// stream ends; bytes left after the last entry form one more delivery at
// the last entry's time. The first entry's dt counts from time 0. Any
// byte string decodes to some stream, so the fuzzer may mutate the table
// and the stream alike: changing the table moves the feed boundaries and
// the clock, changing the rest changes the frames.
//
// A recorded trace encodes exactly (EncodeDispatchInput), so its
// deliveries become the split points and its timestamps the clock.

// EncodeDispatchInput encodes s as a FuzzDispatch input that
// DecodeDispatchInput turns back into s.
func EncodeDispatchInput(s *replay.Stream) []byte {
	n := s.Deliveries()
	out := make([]byte, 0, binary.MaxVarintLen64*(1+2*n)+len(s.Data))
	out = binary.AppendUvarint(out, uint64(n))
	var prev int64
	for i := range n {
		out = binary.AppendUvarint(out, uint64(len(s.Delivery(i))))
		out = binary.AppendVarint(out, s.Times[i]-prev)
		prev = s.Times[i]
	}
	return append(out, s.Data...)
}

// DecodeDispatchInput decodes a FuzzDispatch input. It accepts any
// bytes: input whose table does not parse is one delivery at time 0, and
// lengths past the stream's end are cut short. The stream's Data aliases
// data.
func DecodeDispatchInput(data []byte) *replay.Stream {
	n, k := binary.Uvarint(data)
	if k <= 0 {
		if len(data) == 0 {
			return &replay.Stream{}
		}
		return &replay.Stream{Data: data, Starts: []int64{0}, Times: []int64{0}}
	}
	table := data[k:]
	// Every entry takes at least two bytes, so the table cannot claim
	// more entries than that; this bounds the allocation below.
	n = min(n, uint64(len(table)/2))
	size, ok := tableSize(table, n)
	if !ok {
		return &replay.Stream{Data: data, Starts: []int64{0}, Times: []int64{0}}
	}
	p := table[size:]
	s := &replay.Stream{Data: p, Starts: make([]int64, 0, n+1), Times: make([]int64, 0, n+1)}
	var off uint64
	var t int64
	for range n {
		l, k1 := binary.Uvarint(table)
		dt, k2 := binary.Varint(table[k1:])
		table = table[k1+k2:]
		t += dt
		s.Starts = append(s.Starts, int64(off))
		s.Times = append(s.Times, t)
		off += min(l, uint64(len(p))-off)
	}
	if off < uint64(len(p)) {
		s.Starts = append(s.Starts, int64(off))
		s.Times = append(s.Times, t)
	}
	return s
}

// tableSize returns the bytes taken by n delivery-table entries at the
// start of b, or false if they do not all parse.
func tableSize(b []byte, n uint64) (int, bool) {
	size := 0
	for range n {
		_, k1 := binary.Uvarint(b[size:])
		if k1 <= 0 {
			return 0, false
		}
		_, k2 := binary.Varint(b[size+k1:])
		if k2 <= 0 {
			return 0, false
		}
		size += k1 + k2
	}
	return size, true
}
