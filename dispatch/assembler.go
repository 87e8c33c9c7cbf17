// Package dispatch is the host's dispatch core. In the data flow
// (bytes → tap → Assembler → Dispatch → Sinks → Outcome) it is
// everything after the tap: the streaming Assembler that turns bulk-port
// TX bytes into frames, the gates (gates.go, the gate table row by row)
// that judge each frame, the sinks that keep the effects within their
// budgets (sinks.go), and the Outcome they build.
//
// Session ties them together, and it is the only way in: the live
// coordinator (package vmm), replay, `ktstr trace`, the mutation
// campaign and the fuzz targets all feed a Session. They differ only in
// where the bytes come from and what they do with each frame's Result.
// The protocol itself is written down in docs/protocol.md.
package dispatch

import (
	"github.com/ktstr/ktstr/dispatch/wire"
)

// MaxBuffered is the most bytes an Assembler ever holds between calls:
// one header and one maximal payload (invariant 7).
const MaxBuffered = wire.HeaderSize + wire.MaxPayload

// Message is one complete frame as framed by the Assembler. Torn frames
// are messages too: CRCOK and PadOK say whether the frame is intact.
type Message struct {
	Tag     wire.Tag
	Payload []byte // valid until the next call to Next or Feed
	CRC     uint32 // crc declared in the header
	CRCOK   bool   // the payload's CRC-32 matches CRC
	PadOK   bool   // the header's pad field is zero
	Offset  int64  // stream offset of the frame's first header byte
	Time    int64  // run clock of the delivery holding its last byte (set by Session)
}

// Intact reports whether the frame's crc matches and its pad is zero.
func (m *Message) Intact() bool { return m.CRCOK && m.PadOK }

// Stats counts what the Assembler did with the stream.
type Stats struct {
	Bytes              int64 // bytes fed
	Frames             int64 // complete frames framed, torn ones included
	Oversize           int64 // headers declaring more than wire.MaxPayload
	ResyncBytes        int64 // bytes dropped while resynchronising
	TruncatedTailBytes int64 // bytes left unframed by Finish
}

// Assembler frames a byte stream that arrives in arbitrary pieces.
//
// Feed queues a piece; Next returns the frames it completes, one at a
// time. A frame lying wholly inside a fed piece is returned without
// copying; only the bytes of a frame that straddles pieces are copied,
// into one buffer bounded by MaxBuffered. A Session owns one; use the
// Assembler alone only to frame without judging (its fuzz target). The
// zero value is not ready for use; call NewAssembler.
type Assembler struct {
	queue   [][]byte // fed pieces not yet consumed; queue[0] is current
	buf     []byte   // bytes carried across pieces: buf[bufOff:] is unconsumed
	bufOff  int
	pos     int64 // stream offset of the next unconsumed byte
	resync  bool  // dropping bytes until a plausible header
	stats   Stats
	release bool // the last message's payload lives in buf; drop it on the next call
}

// NewAssembler returns an Assembler at stream offset 0.
func NewAssembler() *Assembler {
	return &Assembler{queue: make([][]byte, 0, 2)}
}

// Feed queues p for framing. The Assembler keeps a reference to p, so
// p must not be modified until Next has reported false.
func (a *Assembler) Feed(p []byte) {
	if len(p) == 0 {
		return
	}
	a.stats.Bytes += int64(len(p))
	a.queue = append(a.queue, p)
}

// Stats returns the counts so far.
func (a *Assembler) Stats() Stats { return a.stats }

// Buffered returns the number of bytes the Assembler holds in its own
// buffer (fed pieces it merely references are not counted).
func (a *Assembler) Buffered() int { return len(a.buf) - a.bufOff }

// BufferCap returns the capacity of the Assembler's own buffer; it never
// exceeds MaxBuffered.
func (a *Assembler) BufferCap() int { return cap(a.buf) }

// Finish ends the stream: the bytes still held — a partial frame, or
// bytes a resync has not yet judged — are counted as the truncated tail
// and dropped. Call it after Next has reported false; queued bytes that
// were never framed count as tail too. The Assembler can be reused for
// a new stream after Reset.
func (a *Assembler) Finish() Stats {
	tail := int64(a.Buffered())
	for _, p := range a.queue {
		tail += int64(len(p))
	}
	a.stats.TruncatedTailBytes += tail
	a.pos += tail
	a.queue = a.queue[:0]
	a.buf, a.bufOff, a.release = a.buf[:0], 0, false
	return a.stats
}

// Reset prepares the Assembler for a new stream at offset 0, keeping its
// buffer's capacity.
func (a *Assembler) Reset() {
	clear(a.queue)
	*a = Assembler{queue: a.queue[:0], buf: a.buf[:0]}
}

// Next returns the next complete frame, or false when the queued bytes
// hold no further complete frame (the remainder is kept for the next
// Feed). The returned Payload is valid until the next call to Next or
// Feed.
func (a *Assembler) Next() (Message, bool) {
	if a.release {
		a.release = false
		a.consumeBuf(a.Buffered())
	}
	// Fast path: a whole frame at the head of the current piece, nothing
	// carried over, not resynchronising. This is the steady state.
	if !a.resync && a.bufOff == len(a.buf) && len(a.queue) > 0 {
		p := a.queue[0]
		if h, ok := wire.DecodeHeader(p); ok && h.Len <= wire.MaxPayload && len(p)-wire.HeaderSize >= int(h.Len) {
			n := wire.HeaderSize + int(h.Len)
			payload := p[wire.HeaderSize:n:n]
			m := Message{Tag: h.Tag, Payload: payload, CRC: h.CRC, CRCOK: wire.Checksum(payload) == h.CRC, PadOK: h.Pad == 0, Offset: a.pos}
			a.pos += int64(n)
			a.stats.Frames++
			a.advanceQueue(n)
			return m, true
		}
	}
	for {
		if a.resync && !a.scan() {
			return Message{}, false
		}
		hdrBytes, ok := a.peek(wire.HeaderSize)
		if !ok {
			return Message{}, false
		}
		h, _ := wire.DecodeHeader(hdrBytes)
		if h.Len > wire.MaxPayload {
			// The length cannot be trusted for framing: drop bytes one
			// at a time until a plausible header (docs/protocol.md).
			a.stats.Oversize++
			a.resync = true
			continue
		}
		n := wire.HeaderSize + int(h.Len)
		frame, fromBuf, ok := a.take(n)
		if !ok {
			return Message{}, false
		}
		payload := frame[wire.HeaderSize:n:n]
		m := Message{
			Tag:     h.Tag,
			Payload: payload,
			CRC:     h.CRC,
			CRCOK:   wire.Checksum(payload) == h.CRC,
			PadOK:   h.Pad == 0,
			Offset:  a.pos - int64(n),
		}
		a.stats.Frames++
		a.release = fromBuf
		return m, true
	}
}

// peek returns the next n unconsumed bytes without consuming them,
// gathering them into buf when they span pieces. It reports false when
// fewer than n bytes are queued; those bytes then sit in buf.
func (a *Assembler) peek(n int) ([]byte, bool) {
	if a.Buffered() == 0 {
		a.buf, a.bufOff = a.buf[:0], 0
		if len(a.queue) > 0 && len(a.queue[0]) >= n {
			return a.queue[0][:n], true
		}
	}
	if !a.fill(n) {
		return nil, false
	}
	return a.buf[a.bufOff : a.bufOff+n], true
}

// take consumes the next n bytes and returns them, reporting whether
// they live in buf (and so must be released before buf is reused).
func (a *Assembler) take(n int) (b []byte, fromBuf bool, ok bool) {
	if a.Buffered() == 0 && len(a.queue) > 0 && len(a.queue[0]) >= n {
		b = a.queue[0][:n]
		a.advanceQueue(n)
		a.pos += int64(n)
		return b, false, true
	}
	if !a.fill(n) {
		return nil, false, false
	}
	b = a.buf[a.bufOff : a.bufOff+n]
	a.bufOff += n
	a.pos += int64(n)
	return b, true, true
}

// fill moves queued bytes into buf until it holds n unconsumed bytes, or
// until the queue is empty (then it reports false).
func (a *Assembler) fill(n int) bool {
	have := a.Buffered()
	if have >= n {
		return true
	}
	if a.bufOff > 0 {
		copy(a.buf, a.buf[a.bufOff:])
		a.buf, a.bufOff = a.buf[:have], 0
	}
	a.grow(n)
	for len(a.buf) < n && len(a.queue) > 0 {
		k := min(n-len(a.buf), len(a.queue[0]))
		a.buf = append(a.buf, a.queue[0][:k]...)
		a.advanceQueue(k)
	}
	return len(a.buf) >= n
}

// grow makes room for n bytes in buf, never beyond MaxBuffered.
func (a *Assembler) grow(n int) {
	if cap(a.buf) >= n {
		return
	}
	c := max(2*cap(a.buf), 256)
	c = min(max(c, n), MaxBuffered)
	nb := make([]byte, len(a.buf), c)
	copy(nb, a.buf)
	a.buf = nb
}

func (a *Assembler) advanceQueue(k int) {
	a.queue[0] = a.queue[0][k:]
	if len(a.queue[0]) == 0 {
		// Shift rather than reslice so the backing array is reused and
		// steady-state feeding does not allocate.
		n := copy(a.queue, a.queue[1:])
		a.queue[n] = nil
		a.queue = a.queue[:n]
	}
}

func (a *Assembler) consumeBuf(k int) {
	a.bufOff += k
	a.pos += int64(k)
	if a.bufOff == len(a.buf) {
		a.buf, a.bufOff = a.buf[:0], 0
	}
}

// scan drops bytes until the next position holds a plausible header,
// counting them as resync bytes. It reports false when the queued bytes
// run out first; fewer than 16 unjudged bytes then wait in buf.
func (a *Assembler) scan() bool {
	for {
		if b := a.Buffered(); b > 0 {
			if b < wire.HeaderSize && len(a.queue) > 0 && len(a.queue[0]) >= wire.HeaderSize {
				// Judge every window that starts in buf at once, on a
				// stack copy joined with the head of the next piece.
				var w [2 * wire.HeaderSize]byte
				n := copy(w[:], a.buf[a.bufOff:])
				copy(w[n:], a.queue[0][:wire.HeaderSize])
				for i := 0; i < b; i++ {
					if plausibleAt(w[i:]) {
						a.stats.ResyncBytes += int64(i)
						a.consumeBuf(i)
						a.resync = false
						return true
					}
				}
				a.stats.ResyncBytes += int64(b)
				a.consumeBuf(b)
				continue
			}
			if !a.fill(wire.HeaderSize) {
				return false
			}
			if plausibleAt(a.buf[a.bufOff:]) {
				a.resync = false
				return true
			}
			a.stats.ResyncBytes++
			a.consumeBuf(1)
			continue
		}
		if len(a.queue) == 0 {
			return false
		}
		// Windows wholly inside the current piece: scan in place.
		p := a.queue[0]
		i := 0
		for ; i+wire.HeaderSize <= len(p); i++ {
			if plausibleAt(p[i:]) {
				a.dropQueued(i)
				a.resync = false
				return true
			}
		}
		// The last bytes of the piece cannot hold a whole header: carry
		// them into buf, where they are joined with the next piece.
		a.dropQueued(i)
		a.fill(len(p) - i)
	}
}

func (a *Assembler) dropQueued(k int) {
	a.stats.ResyncBytes += int64(k)
	a.pos += int64(k)
	a.advanceQueue(k)
}

func plausibleAt(b []byte) bool {
	h, ok := wire.DecodeHeader(b)
	return ok && h.Plausible()
}
