package replay

import (
	"github.com/ktstr/ktstr/capture"
)

// pipeBuffers is how many decoded deliveries may wait between the
// decoding goroutine and the dispatching one.
const pipeBuffers = 4

// recordPipe decodes a trace on its own goroutine so that zstd decoding
// overlaps with framing, CRC and digesting: replay then runs at nearly
// the speed of the decoder alone. Data records are copied into a small
// ring of buffers that the consumer hands back, which bounds memory to
// pipeBuffers deliveries.
type recordPipe struct {
	out  chan pipeItem
	free chan []byte
	done chan struct{}
}

type pipeItem struct {
	rec capture.Record
	err error
}

func newRecordPipe(r *capture.Reader) *recordPipe {
	p := &recordPipe{
		out:  make(chan pipeItem, pipeBuffers-1),
		free: make(chan []byte, pipeBuffers),
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
	for {
		rec, err := r.Next()
		if err == nil && rec.Kind == capture.KindData {
			var buf []byte
			select {
			case buf = <-p.free:
			case <-p.done:
				return
			}
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

func (p *recordPipe) release(b []byte) {
	select {
	case p.free <- b:
	default:
	}
}

// close stops the decoding goroutine.
func (p *recordPipe) close() { close(p.done) }

type pipeError string

func (e pipeError) Error() string { return string(e) }

const errPipeClosed = pipeError("replay: record pipe closed")
