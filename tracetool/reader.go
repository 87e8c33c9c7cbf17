package tracetool

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// piece is the most bytes of one delivery a Reader feeds its Session at
// once: a piece completes at most piece/16 frames, so the frames a Reader
// holds between calls to Next are bounded whatever a delivery holds
// (a delivery may carry 16 MiB). Splitting a delivery changes neither
// the frames nor their clocks (invariant 6): every piece is fed at the
// delivery's time.
const piece = 64 << 10

// Frame is one frame of a trace: a TX frame as the gates judged it, or
// an RX frame (host→guest) as it was framed, unjudged.
type Frame struct {
	Index  int64             // position among the frames of its direction, from 0
	Dir    capture.Direction // TX or RX
	Offset int64             // stream offset of its header in its direction
	Time   int64             // run clock of the delivery holding its last byte, ns
	Tag    wire.Tag          // as the header says, listed or not
	Len    int               // payload bytes
	Intact bool              // crc matches and pad is zero
	// Result is what the gates did with a TX frame; zero for RX.
	Result dispatch.Result
	// Digest is the SHA-256 of the payload when ReaderOptions.Digest is
	// set, else zero.
	Digest dispatch.Digest
}

// Action names what happened to the frame, as `ktstr trace show`
// prints it: the effect of an accepted TX frame, "reject: REASON" for
// a rejected one, "host→guest" for an RX frame.
func (f *Frame) Action() string {
	switch {
	case f.Dir == capture.RX:
		return "host→guest"
	case f.Result.Accepted():
		return f.Result.Effect.String()
	}
	return "reject: " + f.Result.Reject.String()
}

// ReaderOptions says what a Reader computes besides the frames.
type ReaderOptions struct {
	// Digest fills Frame.Digest (one SHA-256 per payload).
	Digest bool
	// RX frames the host→guest deliveries of the bulk port too (in a
	// Session of their own, never judged); without it Next returns TX
	// frames only.
	RX bool
	// OnRecord, if set, sees every record as it is read, before the
	// frames its bytes complete. rec.Data is valid during the call.
	OnRecord func(rec capture.Record)
}

// Reader reads a trace as a stream of frames, as replay frames it: the
// bulk port's TX deliveries, clocked by their recorded times, through a
// dispatch.Session. It holds one record body, the zstd window and the
// frames of one piece of a delivery, whatever the trace holds. A trace
// that ends early is read up to where it ends (Truncation says so); a
// damaged one is an error wrapping replay.ErrBadTrace.
type Reader struct {
	name  string
	opt   ReaderOptions
	cr    *capture.Reader
	tx    *dispatch.Session
	rx    *dispatch.Session
	emit  dispatch.FrameFunc
	dir   capture.Direction // of the delivery being fed
	rest  []byte            // what is left of it
	t     int64             // its time
	pend  []Frame
	head  int
	count [2]int64 // frames per direction
	deliv [2]int64 // deliveries per direction (bulk port)
	bytes [2]int64 // bytes per direction (bulk port)
	end   *capture.End
	trunc *replay.Truncation
	out   dispatch.Outcome
	done  bool
	err   error
}

// NewReader reads the trace header and metadata from src; name labels
// errors. Errors wrap replay.ErrBadTrace.
func NewReader(src io.Reader, name string, opt ReaderOptions) (*Reader, error) {
	cr, err := capture.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, replay.ErrBadTrace, err)
	}
	r := &Reader{name: name, opt: opt, cr: cr, tx: dispatch.NewSession(), pend: make([]Frame, 0, 64)}
	if opt.RX {
		r.rx = dispatch.NewSession()
	}
	r.emit = func(m *dispatch.Message, res dispatch.Result) {
		i := 0
		if r.dir == capture.RX {
			i = 1
			res = dispatch.Result{}
		}
		f := Frame{Index: r.count[i], Dir: r.dir, Offset: m.Offset, Time: m.Time, Tag: m.Tag,
			Len: len(m.Payload), Intact: m.Intact(), Result: res}
		r.count[i]++
		if r.opt.Digest {
			f.Digest = sha256.Sum256(m.Payload)
		}
		r.pend = append(r.pend, f)
	}
	return r, nil
}

// Meta returns the trace's metadata.
func (r *Reader) Meta() capture.Meta { return r.cr.Meta() }

// Next returns the next frame, in stream order (a delivery's frames in
// order, deliveries in the order recorded). The Frame is valid until the
// next call. At the end of the trace it returns io.EOF; after that,
// Outcome, Stats, End and Truncation describe the whole trace.
func (r *Reader) Next() (*Frame, error) {
	for {
		if r.head < len(r.pend) {
			f := &r.pend[r.head]
			r.head++
			return f, nil
		}
		r.pend, r.head = r.pend[:0], 0
		if r.err != nil {
			return nil, r.err
		}
		if len(r.rest) > 0 {
			n := min(len(r.rest), piece)
			s := r.tx
			if r.dir == capture.RX {
				s = r.rx
			}
			s.Feed(r.t, r.rest[:n], r.emit)
			r.rest = r.rest[n:]
			continue
		}
		if r.done {
			return nil, io.EOF
		}
		rec, err := r.cr.Next()
		switch {
		case errors.Is(err, io.EOF):
			r.finish()
			continue
		case errors.Is(err, capture.ErrTruncated):
			r.trunc = replay.TruncationOf(r.cr, err)
			r.finish()
			continue
		case err != nil:
			r.err = fmt.Errorf("%s: %w: %w", r.name, replay.ErrBadTrace, err)
			return nil, r.err
		}
		if rec.Kind == capture.KindEnd {
			if err := checkEndOutcome(rec.End); err != nil {
				r.err = fmt.Errorf("%s: %w: %w", r.name, replay.ErrBadTrace, err)
				return nil, r.err
			}
			r.end = rec.End
		}
		if r.opt.OnRecord != nil {
			r.opt.OnRecord(rec)
		}
		if rec.Kind != capture.KindData || rec.Port != capture.BulkPort {
			continue
		}
		i := 0
		if rec.Dir == capture.RX {
			i = 1
		}
		r.deliv[i]++
		r.bytes[i] += int64(len(rec.Data))
		if rec.Dir == capture.RX && !r.opt.RX {
			continue
		}
		r.dir, r.rest, r.t = rec.Dir, rec.Data, rec.TimeNS
	}
}

func (r *Reader) finish() {
	r.done = true
	r.out = r.tx.Finish()
}

// checkEndOutcome refuses an END record whose outcome is not the
// outcome object of docs/protocol.md §7, in the words replay uses, so
// that every command takes or refuses the same traces.
func checkEndOutcome(e *capture.End) error {
	if e == nil || len(e.Outcome) == 0 {
		return nil
	}
	var o dispatch.Outcome
	if err := json.Unmarshal(e.Outcome, &o); err != nil {
		return fmt.Errorf("the END record's outcome is not valid outcome JSON: %w", err)
	}
	return nil
}

// Outcome returns the outcome of the TX frames read; it is complete once
// Next has returned io.EOF.
func (r *Reader) Outcome() dispatch.Outcome {
	if !r.done {
		return *r.tx.Outcome()
	}
	return r.out
}

// Stats returns the Assembler's counts of the TX stream.
func (r *Reader) Stats() dispatch.Stats { return r.tx.Stats() }

// Deliveries returns the bulk port's deliveries read, TX and RX.
func (r *Reader) Deliveries() (tx, rx int64) { return r.deliv[0], r.deliv[1] }

// Bytes returns the bulk port's bytes read, TX and RX.
func (r *Reader) Bytes() (tx, rx int64) { return r.bytes[0], r.bytes[1] }

// End returns the END record, or nil when the trace has none (yet).
func (r *Reader) End() *capture.End { return r.end }

// Truncation says where a trace that ends early stopped being readable;
// nil for a complete trace.
func (r *Reader) Truncation() *replay.Truncation { return r.trunc }
