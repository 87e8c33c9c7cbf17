package tracetool

import (
	"bufio"
	"encoding/json"
	"io"
	"strconv"

	"github.com/ktstr/ktstr/capture"
)

// Track ids of the Chrome trace-event JSON: one process, one "thread"
// per track.
const (
	jsonPID       = 1
	tidPhases     = 1
	tidWatchdog   = 2
	tidFirstLane  = 10
	chromeVersion = 1
)

// jw writes JSON by hand, in one pass: the trace-event array is written
// event by event, never held.
type jw struct {
	w     *bufio.Writer
	first bool
}

func (j *jw) str(s string) {
	b, _ := json.Marshal(s) // a string always marshals; < > & come out escaped
	j.w.Write(b)
}

// us writes ns as microseconds with three decimals: the trace-event
// format's ts and dur unit.
func (j *jw) us(ns int64) {
	if ns < 0 {
		j.w.WriteByte('-')
		ns = -ns
	}
	var b [24]byte
	out := strconv.AppendInt(b[:0], ns/1000, 10)
	out = append(out, '.')
	r := ns % 1000
	out = append(out, byte('0'+r/100), byte('0'+r/10%10), byte('0'+r%10))
	j.w.Write(out)
}

func (j *jw) int(n int64) { j.w.Write(strconv.AppendInt(nil, n, 10)) }

// event starts one trace event: {"ph":ph,"pid":1,"tid":tid,"name":name.
// The caller adds its fields and closes it with end.
func (j *jw) event(ph string, tid int, name string) {
	if !j.first {
		j.w.WriteString(",\n")
	}
	j.first = false
	j.w.WriteString(`{"ph":"`)
	j.w.WriteString(ph)
	j.w.WriteString(`","pid":1,"tid":`)
	j.int(int64(tid))
	j.w.WriteString(`,"name":`)
	j.str(name)
}

func (j *jw) field(name string) {
	j.w.WriteString(`,"`)
	j.w.WriteString(name)
	j.w.WriteString(`":`)
}

func (j *jw) end() { j.w.WriteByte('}') }

// meta writes a metadata event naming or ordering a track.
func (j *jw) meta(kind string, tid int, value any) {
	j.event("M", tid, kind)
	j.field("args")
	j.w.WriteString(`{"`)
	if kind == "thread_sort_index" || kind == "process_sort_index" {
		j.w.WriteString(`sort_index":`)
	} else {
		j.w.WriteString(`name":`)
	}
	b, _ := json.Marshal(value)
	j.w.Write(b)
	j.w.WriteString("}}")
}

// WriteChromeJSON writes tl in the Chrome trace-event format (the JSON
// object form: {"traceEvents": [...], ...}), which ui.perfetto.dev and
// chrome://tracing open. Times are microseconds on the run clock. The
// encoding is in docs/trace-tools.md: a track per lane with an instant
// event per frame (named by its tag, or "reject: REASON") or, for a
// dense lane, a slice per density bin; a phases track and a watchdog
// track of slices; counters for the bulk port's bytes per second; and
// the coordinator's events as global instant events.
func (tl *Timeline) WriteChromeJSON(dst io.Writer) error {
	j := &jw{w: bufio.NewWriterSize(dst, 64<<10), first: true}
	j.w.WriteString(`{"displayTimeUnit":"ns","otherData":`)
	od, err := json.Marshal(tl.summary())
	if err != nil {
		return err
	}
	j.w.Write(od)
	j.w.WriteString(",\n\"traceEvents\":[\n")

	j.meta("process_name", 0, "ktstr "+tl.title())
	j.meta("thread_name", tidPhases, "phases")
	j.meta("thread_sort_index", tidPhases, 0)
	j.meta("thread_name", tidWatchdog, "watchdog")
	j.meta("thread_sort_index", tidWatchdog, 1)
	for i, l := range tl.Lanes {
		j.meta("thread_name", tidFirstLane+i, l.Name)
		j.meta("thread_sort_index", tidFirstLane+i, 10+i)
	}
	span := func(tid int, cat string, s Span) {
		j.event("X", tid, s.Name)
		j.field("cat")
		j.str(cat)
		j.field("ts")
		j.us(s.Start)
		j.field("dur")
		j.us(s.End - s.Start)
		if s.More > 0 || s.Open {
			j.field("args")
			j.w.WriteString(`{"more":`)
			j.int(s.More)
			j.w.WriteString(`,"open":`)
			j.w.WriteString(strconv.FormatBool(s.Open))
			j.w.WriteByte('}')
		}
		j.end()
	}
	for _, s := range tl.Phases {
		span(tidPhases, "phase", s)
	}
	for _, s := range tl.Pauses {
		span(tidWatchdog, "watchdog", s)
	}
	factor := tl.outFactor()
	for i, l := range tl.Lanes {
		tid := tidFirstLane + i
		for _, m := range l.Marks {
			name, cat := m.Tag.String(), "frame"
			if l.Dir == capture.TX && !m.Result.Accepted() {
				name, cat = "reject: "+m.Result.Reject.String(), "frame,rejected"
			}
			j.event("i", tid, name)
			j.w.WriteString(`,"s":"t","cat":`)
			j.str(cat)
			j.field("ts")
			j.us(m.Time)
			j.w.WriteString(`,"args":{"index":`)
			j.int(m.Index)
			j.w.WriteString(`,"tag":`)
			j.str(m.Tag.String())
			j.w.WriteString(`,"offset":`)
			j.int(m.Offset)
			j.w.WriteString(`,"len":`)
			j.int(int64(m.Len))
			j.w.WriteString(`,"intact":`)
			j.w.WriteString(strconv.FormatBool(m.Intact))
			j.w.WriteString(`,"action":`)
			j.str(markAction(l, &m))
			j.w.WriteString("}}")
		}
		for b, bin := range tl.laneBins(l, factor) {
			if bin.Frames == 0 {
				continue
			}
			j.event("X", tid, strconv.FormatInt(bin.Frames, 10)+" frames")
			j.w.WriteString(`,"cat":"density"`)
			j.field("ts")
			j.us(int64(b) * tl.BinNS * int64(factor))
			j.field("dur")
			j.us(tl.BinNS * int64(factor))
			j.w.WriteString(`,"args":{"frames":`)
			j.int(bin.Frames)
			j.w.WriteString(`,"rejected":`)
			j.int(bin.Rejected)
			j.w.WriteString("}}")
		}
	}
	counter := func(name string, bins []int64) {
		var total int64
		for _, v := range bins {
			total += v
		}
		if total == 0 {
			return
		}
		for b, v := range bins {
			j.event("C", 0, name)
			j.field("ts")
			j.us(int64(b) * tl.BinNS)
			j.w.WriteString(`,"args":{"value":`)
			j.w.Write(strconv.AppendFloat(nil, float64(v)*1e9/float64(tl.BinNS), 'f', 0, 64))
			j.w.WriteString("}}")
		}
		j.event("C", 0, name)
		j.field("ts")
		j.us(int64(len(bins)) * tl.BinNS)
		j.w.WriteString(`,"args":{"value":0}}`)
	}
	counter("TX bytes/s", tl.TXBytes)
	counter("RX bytes/s", tl.RXBytes)
	counter("events per bin past the marker limit", tl.EventBins)
	for _, m := range tl.Markers {
		cat := "event"
		if m.End {
			cat = "end"
		}
		j.event("i", 0, m.Name)
		j.w.WriteString(`,"s":"g","cat":`)
		j.str(cat)
		j.field("ts")
		j.us(m.Time)
		j.w.WriteString(`,"args":{"detail":`)
		j.str(m.Detail)
		j.w.WriteString("}}")
	}
	j.w.WriteString("\n]}\n")
	return j.w.Flush()
}

// markAction is what a mark's tooltip and args say the frame did.
func markAction(l *Lane, m *Mark) string {
	f := Frame{Dir: l.Dir, Result: m.Result}
	return f.Action()
}

// laneBins returns a dense lane's bins merged factor at a time; nil for
// a lane of marks.
func (tl *Timeline) laneBins(l *Lane, factor int) []Bin {
	if !l.Dense {
		return nil
	}
	if factor == 1 {
		return l.Bins
	}
	out := make([]Bin, (len(l.Bins)+factor-1)/factor)
	for i, b := range l.Bins {
		out[i/factor].Frames += b.Frames
		out[i/factor].Rejected += b.Rejected
	}
	return out
}

// TimelineSummary is the trace-level part of a timeline: the JSON's
// otherData and the HTML page's header.
type TimelineSummary struct {
	Tool       string `json:"tool"`             // "ktstr trace timeline"
	Version    int    `json:"timeline_version"` // of this encoding
	Trace      string `json:"trace"`            // the trace as named
	Scenario   string `json:"scenario"`         // from the metadata
	Backend    string `json:"backend"`          // from the metadata
	Kernel     string `json:"kernel"`           // the kernel release, from the metadata
	StartTime  string `json:"start_time"`       // RFC 3339, UTC; "" when unknown
	EndNS      int64  `json:"end_ns"`           // Timeline.EndNS
	BinNS      int64  `json:"bin_ns"`           // Timeline.BinNS
	TXFrames   int64  `json:"tx_frames"`        // every TX frame
	RXFrames   int64  `json:"rx_frames"`        // every RX frame
	Lanes      int    `json:"lanes"`            // lanes, dense ones included
	DenseLanes int    `json:"dense_lanes"`      // lanes drawn as density bands
	Marks      int    `json:"marks"`            // frames drawn one mark each
	Markers    int    `json:"markers"`          // events and END drawn as markers
	Events     int64  `json:"events"`           // every EVENT record
	End        string `json:"end"`              // the END reason, "" without one
	Truncated  bool   `json:"truncated"`        // the trace ends early
}

func (tl *Timeline) summary() TimelineSummary {
	s := TimelineSummary{Tool: "ktstr trace timeline", Version: chromeVersion, Trace: cut(tl.Trace, maxMeta), Scenario: cut(tl.Meta.Scenario, maxMeta),
		Backend: cut(tl.Meta.Backend, maxMeta), Kernel: cut(tl.Meta.KernelRelease, maxMeta), EndNS: tl.EndNS, BinNS: tl.BinNS,
		TXFrames: tl.TXFrames, RXFrames: tl.RXFrames, Lanes: len(tl.Lanes), DenseLanes: tl.DenseLanes(),
		Marks: tl.MarkCount(), Markers: len(tl.Markers), Events: tl.Events, Truncated: tl.Truncation != nil}
	if !tl.Meta.StartTime.IsZero() {
		s.StartTime = tl.Meta.StartTime.UTC().Format("2006-01-02T15:04:05Z")
	}
	if tl.End != nil {
		s.End = cut(tl.End.Reason, maxMeta)
	}
	return s
}

// Summary returns the trace-level figures of the timeline.
func (tl *Timeline) Summary() TimelineSummary { return tl.summary() }

// title names the timeline: its scenario and trace, each cut to
// maxMeta bytes (metadata may hold a megabyte).
func (tl *Timeline) title() string {
	t := cut(tl.Trace, maxMeta)
	if tl.Meta.Scenario != "" {
		t = cut(tl.Meta.Scenario, maxMeta) + " (" + t + ")"
	}
	return t
}
