package tracetool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/replay"
)

// DefaultLoadLimit is the longest TX stream the minimizer holds by
// default: the stream replay holds for its model checks
// (replay.DefaultModelLimit), which a violation needs.
const DefaultLoadLimit = replay.DefaultModelLimit

// Loaded is a trace's TX stream held in memory, with what the trace says
// about it.
type Loaded struct {
	Stream   *replay.Stream    // the TX deliveries of the bulk port
	Meta     capture.Meta      // the trace's metadata
	End      *capture.End      // nil when the trace has none
	Recorded *dispatch.Outcome // the END record's outcome, nil when it has none
	// Truncation says where a trace that ends early stopped being
	// readable; nil for a complete trace. Stream is its readable prefix.
	Truncation *replay.Truncation
	Events     int // EVENT records
	RX         int // RX deliveries on the bulk port
}

// Load reads a trace's TX deliveries on the bulk port into memory, up to
// limit bytes: a longer stream is refused with an error wrapping
// replay.ErrTooLong, a damaged trace with one wrapping replay.ErrBadTrace.
// name labels the errors.
func Load(src io.Reader, name string, limit int64) (*Loaded, error) {
	r, err := capture.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, replay.ErrBadTrace, err)
	}
	l := &Loaded{Stream: &replay.Stream{}, Meta: r.Meta()}
	for {
		rec, err := r.Next()
		switch {
		case errors.Is(err, io.EOF):
			return l, nil
		case errors.Is(err, capture.ErrTruncated):
			l.Truncation = &replay.Truncation{At: r.Offset(), Reason: strings.TrimPrefix(err.Error(), "capture: ")}
			return l, nil
		case err != nil:
			return nil, fmt.Errorf("%s: %w: %w", name, replay.ErrBadTrace, err)
		}
		switch rec.Kind {
		case capture.KindData:
			if rec.Port != capture.BulkPort {
				continue
			}
			if rec.Dir == capture.RX {
				l.RX++
				continue
			}
			if int64(len(l.Stream.Data)+len(rec.Data)) > limit {
				return nil, fmt.Errorf("%s: %w: it holds more than %d TX bytes", name, replay.ErrTooLong, limit)
			}
			l.Stream.Append(rec.TimeNS, rec.Data)
		case capture.KindEvent:
			l.Events++
		case capture.KindEnd:
			l.End = rec.End
			if len(rec.End.Outcome) > 0 {
				var o dispatch.Outcome
				if err := json.Unmarshal(rec.End.Outcome, &o); err != nil {
					return nil, fmt.Errorf("%s: %w: the END record's outcome is not valid outcome JSON: %w", name, replay.ErrBadTrace, err)
				}
				l.Recorded = &o
			}
		}
	}
}
