package replay

import (
	"sync"

	"github.com/ktstr/ktstr/capture"
)

// pipeBuffers is how many decoded deliveries may wait between the
// decoding goroutine and the dispatching one.
const pipeBuffers = 4

// Byte bounds of the pipe. A delivery up to pipeLend bytes is copied
// into a ring buffer so decoding runs ahead; a larger one (a record can
// hold 16 MiB) is lent as it lies in the Reader's buffer, and decoding
// waits until it is handed back, so it is never held twice. pipeBytes
// bounds the copied bytes waiting at once and the capacity kept for
// reuse.
const (
	pipeLend  = 1 << 20
	pipeBytes = pipeBuffers * pipeLend
)

// recordPipe decodes a trace on its own goroutine so that zstd decoding
// overlaps with framing, CRC and digesting: replay then runs at nearly
// the speed of the decoder alone. Data records are copied into a small
// ring of buffers that the consumer hands back; memory is bounded by
// pipeBytes of deliveries in flight, whatever their sizes.
type recordPipe struct {
	out  chan pipeItem
	free chan []byte
	back chan struct{} // a lent delivery was handed back
	done chan struct{}

	mu       sync.Mutex
	cond     *sync.Cond
	inFlight int  // bytes of data records handed out and not yet released
	kept     int  // capacity of the buffers waiting in free
	closed   bool // close was called
}

type pipeItem struct {
	rec capture.Record
	err error
}

func newRecordPipe(r *capture.Reader) *recordPipe {
	p := &recordPipe{
		out:  make(chan pipeItem, pipeBuffers-1),
		free: make(chan []byte, pipeBuffers),
		back: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	p.cond = sync.NewCond(&p.mu)
	for range pipeBuffers {
		p.free <- nil
	}
	go p.run(r)
	return p
}

// reserve waits until n more bytes fit the budget (one delivery always
// fits when nothing else is in flight), and reports false once the pipe
// is closed.
func (p *recordPipe) reserve(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.closed && p.inFlight > 0 && p.inFlight+n > pipeBytes {
		p.cond.Wait()
	}
	if p.closed {
		return false
	}
	p.inFlight += n
	return true
}

func (p *recordPipe) run(r *capture.Reader) {
	defer close(p.out)
	for {
		rec, err := r.Next()
		if err == nil && rec.Kind == capture.KindData && len(rec.Data) > pipeLend {
			// Lend it, and wait: the Reader reuses its buffer on Next.
			select {
			case p.out <- pipeItem{rec, nil}:
			case <-p.done:
				return
			}
			select {
			case <-p.back:
			case <-p.done:
				return
			}
			continue
		}
		if err == nil && rec.Kind == capture.KindData {
			if !p.reserve(len(rec.Data)) {
				return
			}
			var buf []byte
			select {
			case buf = <-p.free:
			case <-p.done:
				return
			}
			p.mu.Lock()
			p.kept -= cap(buf)
			p.mu.Unlock()
			rec.Data = append(buf[:0], rec.Data...)
		}
		if err == nil && rec.Kind == capture.KindEvent {
			rec.Detail = append([]byte(nil), rec.Detail...)
		}
		select {
		case p.out <- pipeItem{rec, err}:
		case <-p.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns the next record or error; release must be called with a
// data record's Data once it has been consumed.
func (p *recordPipe) next() (capture.Record, error) {
	it, ok := <-p.out
	if !ok {
		return capture.Record{}, errPipeClosed
	}
	return it.rec, it.err
}

// release hands a data record's buffer back: a lent delivery lets
// decoding go on; a copied one's bytes leave the budget, and its buffer
// is kept for reuse while the kept capacity stays within pipeBytes (else
// it is let go and a nil takes its place).
func (p *recordPipe) release(b []byte) {
	if len(b) > pipeLend { // lent, not copied
		p.back <- struct{}{}
		return
	}
	p.mu.Lock()
	p.inFlight -= len(b)
	if p.kept+cap(b) > pipeBytes {
		b = nil
	}
	p.kept += cap(b)
	p.cond.Signal()
	p.mu.Unlock()
	select {
	case p.free <- b:
	default:
		p.mu.Lock()
		p.kept -= cap(b)
		p.mu.Unlock()
	}
}

// close stops the decoding goroutine.
func (p *recordPipe) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	close(p.done)
}

type pipeError string

func (e pipeError) Error() string { return string(e) }

const errPipeClosed = pipeError("replay: record pipe closed")
