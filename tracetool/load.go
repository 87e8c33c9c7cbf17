package tracetool

import (
	"encoding/json"
	"fmt"
	"io"

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
	h, err := replay.Hold(src, limit)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, err)
	case h.More:
		return nil, fmt.Errorf("%s: %w: it holds more than %d TX bytes or %d deliveries", name, replay.ErrTooLong, limit, replay.MaxHeldDeliveries)
	}
	l := &Loaded{Stream: h.Stream, Meta: h.Meta, End: h.End, Truncation: h.Truncation, Events: h.Events, RX: h.RX}
	if h.End != nil && len(h.End.Outcome) > 0 {
		var o dispatch.Outcome
		if err := json.Unmarshal(h.End.Outcome, &o); err != nil {
			return nil, fmt.Errorf("%s: %w: the END record's outcome is not valid outcome JSON: %w", name, replay.ErrBadTrace, err)
		}
		l.Recorded = &o
	}
	return l, nil
}
