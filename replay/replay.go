package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
)

// DefaultModelLimit is how many TX bytes a replay holds in memory to run
// the reference model and the second-split check. Larger traces replay
// in bounded memory with invariants 1–5, 7–9 checked frame by frame.
const DefaultModelLimit = 4 << 20

// Options configures a replay.
type Options struct {
	Chunking   Chunking
	ModelLimit int64 // 0 means DefaultModelLimit; < 0 never holds the stream
}

// Report is the result of replaying one trace. It marshals to the JSON
// Lines object of docs/protocol.md.
type Report struct {
	Trace      string            `json:"trace"`
	Frames     int64             `json:"frames"`
	Bytes      int64             `json:"bytes"`
	Outcome    dispatch.Outcome  `json:"outcome"`
	Recorded   *dispatch.Outcome `json:"recorded"`
	Match      bool              `json:"match"`
	Violations []string          `json:"violations"`
	// Truncation says where a trace that ends early stopped being
	// readable; nil for a complete trace.
	Truncation *Truncation `json:"truncated"`
	// Mutation is the mutation campaign run on the trace (`ktstr replay
	// --mutate`); nil, and absent from the JSON, without one.
	Mutation *Mutation `json:"mutation,omitempty"`

	Meta         capture.Meta   `json:"-"`
	End          *capture.End   `json:"-"` // nil for a trace without END (imported)
	Diff         []string       `json:"-"` // how Outcome differs from Recorded
	Stats        dispatch.Stats `json:"-"`
	ModelChecked bool           `json:"-"` // the stream fit in ModelLimit: invariants 6 and 10 were checked
	Deliveries   int            `json:"-"`
}

// Truncation is where and why a trace's readable prefix ends.
type Truncation struct {
	At     int64  `json:"at"`     // decompressed byte offset where reading stopped
	Reason string `json:"reason"` // what the reader found there
}

// Mutation is the "mutation" member of a report (docs/protocol.md §7):
// what a mutation campaign over the trace's TX stream found.
type Mutation struct {
	Mutants int    `json:"mutants"` // mutants made and replayed
	Failing int    `json:"failing"` // mutants that broke an invariant
	Seed    uint64 `json:"seed"`    // the campaign's seed
	// Bytes is the length of the stream the mutants were made from: the
	// whole TX stream, or its first deliveries up to the campaign's
	// limit when Limited is set.
	Bytes     int                `json:"bytes"`
	Limited   bool               `json:"limited"`
	Operators []MutationOperator `json:"operators"` // one per operator, in campaign order
	Saved     []string           `json:"saved"`     // the failing mutants written as traces (--save-failures)
	// Interrupted says a signal stopped the campaign before its
	// mutants were all made; Mutants counts those that were.
	Interrupted bool `json:"interrupted,omitempty"`
}

// MutationOperator is one operator's row of a campaign.
type MutationOperator struct {
	Name       string `json:"name"`
	Mutants    int    `json:"mutants"`
	Frames     int64  `json:"frames"`
	Torn       uint64 `json:"torn"`       // frames rejected as crc or pad
	Rejected   uint64 `json:"rejected"`   // frames rejected for any reason
	Violations int    `json:"violations"` // mutants with at least one violation
}

// TruncationOf says where the Reader r stopped when it met err, an
// error wrapping capture.ErrTruncated.
func TruncationOf(r *capture.Reader, err error) *Truncation {
	return &Truncation{At: r.Offset(), Reason: strings.TrimPrefix(err.Error(), "capture: ")}
}

// OK reports whether the replay matched and broke no invariant.
func (r *Report) OK() bool { return r.Match && len(r.Violations) == 0 }

// ErrBadTrace wraps every error about the trace file itself.
var ErrBadTrace = errors.New("bad trace")

// Trace replays the trace read from src. name labels the report. A
// trace that ends early is replayed up to where it ends, and the report
// says so; a trace that cannot be read at all is an error wrapping
// ErrBadTrace.
func Trace(src io.Reader, name string, opt Options) (*Report, error) {
	r, err := capture.NewReader(src, capture.WithDecoders(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrBadTrace, err)
	}
	defer r.Close() // after the pipe's goroutine, deferred below, has ended
	limit := opt.ModelLimit
	if limit == 0 {
		limit = DefaultModelLimit
	}
	if opt.Chunking.Kind == ChunkWhole && limit <= 0 {
		return nil, fmt.Errorf("%s: chunking whole feeds the stream in one piece, which needs it in memory; use recorded, bytes or random:SEED", name)
	}
	rep := &Report{Trace: name, Meta: r.Meta(), Violations: []string{}}
	v := &violations{}
	e := newEngine(nil, v)
	sp := newSplitter(opt.Chunking, e)
	var held *Stream // the stream in memory while it fits the limit
	if limit > 0 {
		held = &Stream{}
	}
	pipe := newRecordPipe(r)
	defer pipe.close()

	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				v.add(8, "panic while replaying: %v", p)
			}
		}()
		for {
			it, err := pipe.next()
			rec := it.rec
			if errors.Is(err, io.EOF) {
				return nil
			}
			if errors.Is(err, capture.ErrTruncated) {
				rep.Truncation = TruncationOf(r, err)
				return nil
			}
			if err != nil {
				return err
			}
			switch rec.Kind {
			case capture.KindData:
				if rec.Dir != capture.TX || rec.Port != capture.BulkPort {
					pipe.release(it) // every data buffer goes back, or the decoder stalls
					continue
				}
				rep.Deliveries++
				if held != nil {
					if !held.fits(len(rec.Data), limit) {
						if opt.Chunking.Kind == ChunkWhole {
							return fmt.Errorf("chunking whole feeds the stream in one piece, and this one exceeds %d bytes or %d deliveries; use recorded, bytes or random:SEED", limit, MaxHeldDeliveries)
						}
						held = nil
					} else {
						held.Append(rec.TimeNS, rec.Data)
					}
				}
				if opt.Chunking.Kind != ChunkWhole {
					sp.split(rec.TimeNS, rec.Data)
				}
				// The Assembler keeps no reference once Next has reported
				// false, so the buffer can go back to the decoder.
				pipe.release(it)
			case capture.KindEnd:
				rep.End = rec.End
			}
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrBadTrace, err)
	}
	if v.count[8] == 0 {
		if opt.Chunking.Kind == ChunkWhole {
			marks := make([]dispatch.Mark, held.Deliveries())
			for i := range marks {
				marks[i] = dispatch.Mark{Off: int(held.Starts[i]), Time: held.Times[i]}
			}
			e.feedJoined(held.Data, marks)
		} else {
			sp.flush()
		}
	}
	rep.Outcome = e.finish()
	rep.Stats = e.s.Stats()
	rep.Frames, rep.Bytes = rep.Stats.Frames, rep.Stats.Bytes

	if held != nil && v.count[8] == 0 {
		rep.ModelChecked = true
		_, _, more := CheckStream(held, opt.Chunking)
		for _, m := range more {
			if !contains(v.list, m) {
				v.list = append(v.list, m)
			}
		}
	}
	rep.Violations = append(rep.Violations, v.list...)

	rep.Match = true
	if rep.End != nil && len(rep.End.Outcome) > 0 {
		var rec dispatch.Outcome
		if err := json.Unmarshal(rep.End.Outcome, &rec); err != nil {
			return nil, fmt.Errorf("%s: %w: the END record's outcome is not valid outcome JSON: %w", name, ErrBadTrace, err)
		}
		rep.Recorded = &rec
		rep.Diff = rep.Outcome.Diff(&rec)
		rep.Match = len(rep.Diff) == 0
	}
	return rep, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ErrTooLong reports a TX stream longer than the caller's limit.
var ErrTooLong = errors.New("the TX stream is longer than the limit")

// MaxHeldDeliveries is the most deliveries a stream held in memory keeps:
// each costs 16 bytes of Starts and Times besides its bytes, so a trace
// of one-byte deliveries must not make a 4 MiB stream a 64 MiB one.
const MaxHeldDeliveries = 1 << 18

// fits reports whether one more delivery of n bytes stays within limit
// bytes and MaxHeldDeliveries.
func (s *Stream) fits(n int, limit int64) bool {
	return int64(len(s.Data)+n) <= limit && s.Deliveries() < MaxHeldDeliveries
}

// Held is a trace's TX bulk-port stream held in memory, with what else
// the trace says: every command that works on a whole stream (mutation,
// minimisation, corpus export) reads it with Hold.
type Held struct {
	Stream     *Stream
	Meta       capture.Meta
	End        *capture.End // the END record, nil when the trace has none or More
	Truncation *Truncation  // where a trace cut short stops; nil when complete
	More       bool         // the stream goes on past the limit (Stream is its prefix)
	Events     int          // EVENT records read
	RX         int          // RX deliveries on the bulk port read
}

// Hold reads a trace's TX bulk-port deliveries into memory, stopping
// before the first that would pass limit bytes or MaxHeldDeliveries
// (then More is set). Errors about the trace wrap ErrBadTrace.
func Hold(src io.Reader, limit int64) (*Held, error) {
	r, err := capture.NewReader(src, capture.WithDecoders(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTrace, err)
	}
	defer r.Close()
	h := &Held{Stream: &Stream{}}
	for {
		rec, err := r.Next()
		h.Meta = r.Meta()
		switch {
		case errors.Is(err, io.EOF):
			return h, nil
		case errors.Is(err, capture.ErrTruncated):
			h.Truncation = TruncationOf(r, err)
			return h, nil
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrBadTrace, err)
		}
		switch {
		case rec.Kind == capture.KindData && rec.Port == capture.BulkPort && rec.Dir == capture.RX:
			h.RX++
		case rec.Kind == capture.KindData && rec.Port == capture.BulkPort:
			if !h.Stream.fits(len(rec.Data), limit) {
				h.More = true
				return h, nil
			}
			h.Stream.Append(rec.TimeNS, rec.Data)
		case rec.Kind == capture.KindEvent:
			h.Events++
		case rec.Kind == capture.KindEnd:
			h.End = rec.End
		}
	}
}

// ReadStream reads a trace's TX bulk-port deliveries into memory, for
// mutation and inspection; it refuses streams over limit bytes (or
// MaxHeldDeliveries) with an error wrapping ErrTooLong.
func ReadStream(src io.Reader, limit int64) (*Stream, capture.Meta, *capture.End, error) {
	h, err := Hold(src, limit)
	if err != nil {
		return nil, capture.Meta{}, nil, err
	}
	if h.More {
		return nil, h.Meta, nil, fmt.Errorf("%w: it exceeds %d bytes or %d deliveries", ErrTooLong, limit, MaxHeldDeliveries)
	}
	return h.Stream, h.Meta, h.End, nil
}

// WriteStream writes s as a trace (TX deliveries with their times, no
// END record), so a saved mutant replays with `ktstr replay`.
func WriteStream(dst io.Writer, s *Stream, meta capture.Meta) error {
	w, err := capture.NewWriter(dst, meta)
	if err != nil {
		return err
	}
	for i := range s.Deliveries() {
		if err := w.WriteData(capture.TX, capture.BulkPort, s.Times[i], s.Delivery(i)); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
