package replay

import (
	"github.com/ktstr/ktstr/capture"
)

// pipeBuffers is how many decoded deliveries may wait between the
// decoding goroutine and the dispatching one. Measured on the benchmark
// trace (64 KiB deliveries, 2 cores): with four, replay ran at 0.58 ×
// zstd decode, with eight at 0.87, with sixteen no faster.
const pipeBuffers = 8

// pipeLend bounds the pipe's buffers. A delivery up to pipeLend bytes is
// decoded straight into one of a ring of pipeBuffers buffers, so
// decoding runs ahead without copying it again; a larger one (a record
// can hold 16 MiB) is lent as it lies in the Reader's buffer, and
// decoding waits until it is handed back, so it is never held twice.
// Memory is bounded by pipeBuffers × pipeLend plus one record, whatever
// the deliveries' sizes.
const pipeLend = 512 << 10

// bodySlack is what a ring buffer holds beyond the delivery it grows
// for: the DATA record's fixed fields, which the Reader decodes into it
// in front of the delivery.
const bodySlack = 1 << 10

// recordPipe reads a trace on its own goroutine so that reading (the
// Reader's record parsing and its one copy of each delivery into the
// ring; the zstd frames are decoded on goroutines of the Reader's own)
// overlaps with framing, CRC and digesting.
type recordPipe struct {
	out  chan pipeItem
	free chan []byte   // ring buffers handed back (nil: not yet made)
	back chan struct{} // a lent delivery was handed back
	done chan struct{}
}

// pipeItem is one record, and what holds its Data.
type pipeItem struct {
	rec  capture.Record
	err  error
	ring []byte // the ring buffer holding rec.Data, nil if none
	lent bool   // rec.Data lies in the Reader's buffer
}

func newRecordPipe(r *capture.Reader) *recordPipe {
	p := &recordPipe{
		out:  make(chan pipeItem, pipeBuffers-1),
		free: make(chan []byte, pipeBuffers),
		back: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	for range pipeBuffers {
		p.free <- nil
	}
	go p.run(r)
	return p
}

func (p *recordPipe) run(r *capture.Reader) {
	defer close(p.out)
	var ring []byte // the ring buffer the next delivery decodes into
	held := false   // ring was taken from free
	for {
		// Stop as soon as close asks: the selects below pick at random
		// among ready cases, and could go on decoding for a while.
		select {
		case <-p.done:
			return
		default:
		}
		if !held {
			select {
			case ring = <-p.free:
				held = true
			case <-p.done:
				return
			}
		}
		rec, inRing, err := r.NextInto(ring)
		it := pipeItem{rec: rec, err: err}
		switch {
		case err != nil || rec.Kind == capture.KindEnd:
		case rec.Kind == capture.KindEvent:
			it.rec.Detail = append([]byte(nil), rec.Detail...)
		case inRing:
			it.ring, held = ring, false
		case len(rec.Data) > pipeLend:
			it.lent = true
		default:
			// The ring buffer grows to hold this delivery, and the
			// ones after it of up to its size decode straight into it.
			grown := make([]byte, len(rec.Data), min(pipeLend, max(2*cap(ring), len(rec.Data)))+bodySlack)
			copy(grown, rec.Data)
			it.rec.Data, it.ring, held = grown, grown, false
		}
		select {
		case p.out <- it:
		case <-p.done:
			return
		}
		if err != nil {
			return
		}
		if it.lent {
			select {
			case <-p.back:
			case <-p.done:
				return
			}
		}
	}
}

// next returns the next record or error; release must be called with it
// once its Data has been consumed.
func (p *recordPipe) next() (pipeItem, error) {
	it, ok := <-p.out
	if !ok {
		return pipeItem{}, errPipeClosed
	}
	return it, it.err
}

// release hands a record's buffer back: a lent delivery lets decoding go
// on, a ring buffer goes back to the ring.
func (p *recordPipe) release(it pipeItem) {
	switch {
	case it.lent:
		p.back <- struct{}{}
	case it.ring != nil:
		p.free <- it.ring
	}
}

// close stops the decoding goroutine and waits until it has ended, so
// that the trace's source is not read after the replay returns (a Read
// under way is let finish, as io.Reader gives no way to cancel one).
func (p *recordPipe) close() {
	close(p.done)
	for range p.out {
	}
}

type pipeError string

func (e pipeError) Error() string { return string(e) }

const errPipeClosed = pipeError("replay: record pipe closed")
