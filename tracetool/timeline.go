package tracetool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// Timeline bounds: whatever the trace holds, a Timeline holds at most
// these, and so do the files written from it (docs/trace-tools.md).
const (
	// LaneMarks is the most frames a lane shows one mark each for;
	// a lane with more shows density bands.
	LaneMarks = 4096
	// TotalMarks is the most frame marks all lanes show together: the
	// lanes with the fewest frames get theirs first.
	TotalMarks = 16384
	// Bins is the most density bins the time axis is cut into.
	Bins = 512
	// MaxMarkers is the most EVENT records shown as markers; later ones
	// are counted per bin.
	MaxMarkers = 1000
	// MaxPhases and MaxPauses bound the phase and watchdog-pause slices;
	// past them the last slice counts the rest.
	MaxPhases = 256
	MaxPauses = 1024
	// outBins bounds the density bins written for all dense lanes
	// together: with many dense lanes, bins are written merged in twos,
	// fours, …
	outBins = 8192
	// maxDetail bounds the summary of an event's detail; details over
	// maxDetailParse bytes are not parsed at all.
	maxDetail      = 160
	maxDetailParse = 64 << 10
	maxName        = 64
	maxMeta        = 256 // bytes of a metadata string (scenario, kernel, …) shown
	firstBinNS     = 1000
	// MaxClock is the latest time a timeline draws (2^61 ns, 73 years):
	// a crafted trace's later times are drawn there, and its times
	// before 0 at 0, so that no bin or slice arithmetic overflows.
	MaxClock = int64(1) << 61
)

// clock clamps a trace's time to what a timeline draws: [0, MaxClock].
func clock(t int64) int64 { return min(max(t, 0), MaxClock) }

// Timeline is what a trace looked like over its run: a lane per
// direction and tag, the run's phases, the watchdog's pauses, the
// coordinator's events and the bytes per second, on the run clock.
// Build one with BuildTimeline; it is bounded (LaneMarks, TotalMarks,
// Bins, MaxMarkers, MaxPhases, MaxPauses) whatever the trace holds.
type Timeline struct {
	Trace string       // the trace as named
	Meta  capture.Meta // its metadata
	// EndNS is where the time axis ends: the latest time in the trace
	// (records, frames, the END record). Times before 0 are drawn at 0,
	// times past MaxClock at MaxClock.
	EndNS int64
	// BinNS is the width of a density bin; bin i covers
	// [i·BinNS, (i+1)·BinNS).
	BinNS int64
	Lanes []*Lane // TX lanes in gate-table order, then RX lanes; "other" last in each
	// Phases are boot (run start → first accepted SRDY), ready (→ first
	// accepted SCST), scenario 1, 2, … (each accepted SCST → the next)
	// up to EndNS.
	Phases []Span
	// Pauses are the watchdog's pauses: accepted SCPP → accepted SCRR,
	// or EndNS for one never resumed.
	Pauses []Span
	// Markers are the coordinator's EVENT records (the first MaxMarkers)
	// and the END record.
	Markers []Marker
	// Events counts every EVENT record; EventBins counts, per bin, those
	// past MaxMarkers.
	Events    int64
	EventBins []int64 // per bin
	// TXBytes and RXBytes are the bulk port's bytes per bin, by delivery
	// time.
	TXBytes, RXBytes   []int64
	TXFrames, RXFrames int64              // every frame, each way
	Outcome            dispatch.Outcome   // the replayed outcome of the TX frames
	End                *capture.End       // the END record, nil without one
	Truncation         *replay.Truncation // where the trace ends early; nil when complete
}

// Lane is the frames of one tag in one direction (TX frames of tags
// outside the gate table share the lane "other", and so on RX).
type Lane struct {
	Name     string            // "SNRQ", "other", "RX SNRP"
	Dir      capture.Direction // TX or RX
	Class    wire.Class        // the tag's class; Unknown for "other"
	Frames   int64             // every frame of the lane
	Accepted int64             // TX frames the gates accepted
	Bytes    int64             // payload bytes
	// Rejected counts the lane's rejected frames by reason
	// (indexed by dispatch.Reason).
	Rejected [dispatch.RejectOutOfOrder + 1]int64
	// Dense says the lane is drawn as density bands (Bins), not one mark
	// per frame (Marks).
	Dense bool
	Marks []Mark // one per frame, when not Dense
	Bins  []Bin  // one per density bin, when Dense
	key   laneKey
}

// RejectedTotal returns the lane's rejected frames.
func (l *Lane) RejectedTotal() int64 {
	var n int64
	for _, c := range l.Rejected {
		n += c
	}
	return n
}

// Mark is one frame in a lane.
type Mark struct {
	Index  int64           // among the frames of its direction
	Time   int64           // run clock, ns; never below 0
	Offset int64           // stream offset of its header
	Len    int             // payload bytes
	Tag    wire.Tag        // as framed (an "other" lane holds many)
	Intact bool            // crc matches and pad is zero
	Result dispatch.Result // what the gates did (TX only)
}

// Bin is one density bin of a lane.
type Bin struct {
	Frames, Rejected int64 // frames in the bin, and how many of them were rejected
}

// Span is a slice of the run: a phase or a watchdog pause.
type Span struct {
	Name       string // "boot", "ready", "scenario N", "watchdog paused"
	Start, End int64  // run clock, ns
	// More counts the slices folded into this one past the bound
	// (MaxPhases, MaxPauses).
	More int64
	// Open says it never ended inside the trace (a pause without SCRR).
	Open bool
}

// Marker is an EVENT or END record drawn across every lane.
type Marker struct {
	Time   int64  // run clock, ns; never below 0
	Name   string // the event's name, "end: REASON" for the END record
	Detail string // a summary of the event's detail: its scalar fields, cut to 160 bytes
	End    bool   // the END record
}

type laneKey struct {
	dir capture.Direction
	tag wire.Tag // 0 for "other"
}

// builder streams a trace into a Timeline.
type builder struct {
	tl         *Timeline
	lanes      map[laneKey]*Lane
	binNS      int64
	maxT       int64
	bounds     []boundary // where phases start, at most MaxPhases
	morePhases int64      // boundaries past MaxPhases
	pausedAt   int64
	paused     bool
}

// BuildTimeline reads a trace as a stream and returns its Timeline.
// name labels errors, which wrap replay.ErrBadTrace.
func BuildTimeline(src io.Reader, name string) (*Timeline, error) {
	b := &builder{tl: &Timeline{Trace: name}, lanes: map[laneKey]*Lane{}, binNS: firstBinNS}
	tl := b.tl
	tl.TXBytes, tl.RXBytes, tl.EventBins = make([]int64, Bins), make([]int64, Bins), make([]int64, Bins)
	r, err := NewReader(src, name, ReaderOptions{RX: true, OnRecord: b.record})
	if err != nil {
		return nil, err
	}
	tl.Meta = r.Meta()
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		b.frame(f)
	}
	tl.Outcome, tl.End, tl.Truncation = r.Outcome(), r.End(), r.Truncation()
	b.finish()
	return tl, nil
}

// bin returns the density bin of time t, coarsening every bin series
// until it fits.
func (b *builder) bin(t int64) int {
	t = clock(t)
	b.maxT = max(b.maxT, t)
	for t/b.binNS >= Bins && b.binNS <= math.MaxInt64/4 {
		b.coarsen()
	}
	return int(min(t/b.binNS, Bins-1))
}

// coarsen doubles the bin width, merging bins in pairs.
func (b *builder) coarsen() {
	b.binNS *= 2
	merge := func(s []int64) {
		for i := range Bins / 2 {
			s[i] = s[2*i] + s[2*i+1]
		}
		clear(s[Bins/2:])
	}
	merge(b.tl.TXBytes)
	merge(b.tl.RXBytes)
	merge(b.tl.EventBins)
	for _, l := range b.lanes {
		for i := range Bins / 2 {
			l.Bins[i] = Bin{Frames: l.Bins[2*i].Frames + l.Bins[2*i+1].Frames, Rejected: l.Bins[2*i].Rejected + l.Bins[2*i+1].Rejected}
		}
		clear(l.Bins[Bins/2:])
	}
}

func (b *builder) record(rec capture.Record) {
	tl := b.tl
	switch rec.Kind {
	case capture.KindData:
		if rec.Port != capture.BulkPort {
			b.bin(rec.TimeNS)
			return
		}
		i := b.bin(rec.TimeNS)
		if rec.Dir == capture.RX {
			tl.RXBytes[i] += int64(len(rec.Data))
		} else {
			tl.TXBytes[i] += int64(len(rec.Data))
		}
	case capture.KindEvent:
		i := b.bin(rec.TimeNS)
		tl.Events++
		if len(tl.Markers) >= MaxMarkers {
			tl.EventBins[i]++
			return
		}
		tl.Markers = append(tl.Markers, Marker{Time: clock(rec.TimeNS), Name: cut(rec.Name, maxName), Detail: summarize(rec.Detail)})
	case capture.KindEnd:
		b.bin(rec.TimeNS)
		tl.Markers = append(tl.Markers, Marker{Time: clock(rec.TimeNS), Name: "end: " + cut(rec.End.Reason, maxName),
			Detail: fmt.Sprintf("exit status %d", rec.End.ExitStatus), End: true})
	}
}

func (b *builder) frame(f *Frame) {
	tl := b.tl
	key := laneKey{dir: f.Dir}
	if f.Tag.Listed() {
		key.tag = f.Tag
	}
	l := b.lanes[key]
	if l == nil {
		l = &Lane{Dir: f.Dir, Class: key.tag.Class(), Bins: make([]Bin, Bins), key: key}
		l.Name = "other"
		if key.tag != 0 {
			l.Name = key.tag.String()
		}
		if f.Dir == capture.RX {
			l.Name = "RX " + l.Name
		}
		b.lanes[key] = l
	}
	i := b.bin(f.Time)
	l.Frames++
	l.Bytes += int64(f.Len)
	l.Bins[i].Frames++
	if f.Dir == capture.RX {
		tl.RXFrames++
	} else {
		tl.TXFrames++
		if f.Result.Accepted() {
			l.Accepted++
		} else {
			l.Rejected[f.Result.Reject]++
			l.Bins[i].Rejected++
		}
	}
	if l.Frames <= LaneMarks {
		l.Marks = append(l.Marks, Mark{Index: f.Index, Time: clock(f.Time), Offset: f.Offset, Len: f.Len, Tag: f.Tag, Intact: f.Intact, Result: f.Result})
	} else if l.Marks != nil {
		l.Marks = nil // dense for sure: let the marks go
	}
	if f.Dir != capture.TX || !f.Result.Accepted() {
		return
	}
	t := clock(f.Time)
	switch f.Result.Effect {
	case dispatch.EffectBootComplete, dispatch.EffectScenarioStart:
		if len(b.bounds) < MaxPhases {
			b.bounds = append(b.bounds, boundary{t: t, srdy: f.Result.Effect == dispatch.EffectBootComplete})
		} else {
			b.morePhases++
		}
	case dispatch.EffectWatchdogPause:
		b.paused, b.pausedAt = true, t
	case dispatch.EffectWatchdogResume:
		b.paused = false
		b.addPause(Span{Name: "watchdog paused", Start: b.pausedAt, End: t})
	}
}

// boundary is where a phase starts: an accepted SRDY or SCST.
type boundary struct {
	t    int64
	srdy bool
}

// addPause adds a pause, keeping the pauses in order and apart, and
// folding those past MaxPauses into the last.
func (b *builder) addPause(p Span) {
	tl := b.tl
	if n := len(tl.Pauses); n > 0 {
		p.Start = max(p.Start, tl.Pauses[n-1].End)
	}
	p.End = max(p.End, p.Start)
	if n := len(tl.Pauses); n >= MaxPauses {
		tl.Pauses[n-1].More++
		tl.Pauses[n-1].End = max(tl.Pauses[n-1].End, p.End)
		tl.Pauses[n-1].Open = p.Open
		return
	}
	tl.Pauses = append(tl.Pauses, p)
}

// phases cuts [0, end] at the boundaries: boot until the first accepted
// SRDY, ready until the first accepted SCST, scenario k from the k-th.
// A boundary earlier than the one before it (a trace whose times go
// back) starts its phase where the previous one ended, so the phases
// never overlap.
func (b *builder) phases(end int64) []Span {
	var out []Span
	srdy, k := false, 0
	cur := Span{Name: "boot", Start: 0}
	for _, bd := range b.bounds {
		t := max(bd.t, cur.Start)
		if bd.srdy && srdy {
			continue // only the first SRDY is accepted; be safe
		}
		cur.End = t
		out = append(out, cur)
		if bd.srdy {
			srdy = true
			if k == 0 {
				cur = Span{Name: "ready", Start: t}
			} else {
				cur = Span{Name: fmt.Sprintf("scenario %d", k), Start: t}
			}
			continue
		}
		k++
		cur = Span{Name: fmt.Sprintf("scenario %d", k), Start: t}
		if !srdy {
			cur.Name += " (before SYS_RDY)"
		}
	}
	cur.End = max(end, cur.Start)
	cur.More = b.morePhases
	if !srdy && k == 0 {
		cur.Name, cur.Open = "boot (no SYS_RDY accepted)", true
	}
	out = append(out, cur)
	// A phase of zero length at the start (SRDY at time 0) says nothing.
	if len(out) > 1 && out[0].End == out[0].Start {
		out = out[1:]
	}
	return out
}

func (b *builder) finish() {
	tl := b.tl
	end := b.maxT
	tl.EndNS = max(end, 1)
	tl.BinNS = b.binNS
	tl.Phases = b.phases(end)
	if b.paused {
		b.addPause(Span{Name: "watchdog paused (never resumed)", Start: b.pausedAt, End: end, Open: true})
	}
	// Lanes in gate-table order, TX then RX, "other" last in each.
	order := map[wire.Tag]int{}
	for i, t := range wire.Tags() {
		order[t] = i
	}
	for _, l := range b.lanes {
		tl.Lanes = append(tl.Lanes, l)
	}
	rank := func(l *Lane) int {
		r := len(order)
		if l.key.tag != 0 {
			r = order[l.key.tag]
		}
		if l.Dir == capture.RX {
			r += 1000
		}
		return r
	}
	sort.Slice(tl.Lanes, func(i, j int) bool { return rank(tl.Lanes[i]) < rank(tl.Lanes[j]) })
	// Marks: the smallest lanes first, while they fit.
	bySize := slices.Clone(tl.Lanes)
	sort.SliceStable(bySize, func(i, j int) bool { return bySize[i].Frames < bySize[j].Frames })
	budget := int64(TotalMarks)
	for _, l := range bySize {
		if l.Frames <= LaneMarks && l.Frames <= budget {
			budget -= l.Frames
			l.Bins = nil
			continue
		}
		l.Dense, l.Marks = true, nil
	}
	used := int(min(tl.EndNS/tl.BinNS+1, Bins))
	for _, l := range tl.Lanes {
		if l.Bins != nil {
			l.Bins = l.Bins[:used]
		}
	}
	tl.TXBytes, tl.RXBytes, tl.EventBins = tl.TXBytes[:used], tl.RXBytes[:used], tl.EventBins[:used]
}

// DenseLanes returns the lanes drawn as density bands.
func (tl *Timeline) DenseLanes() int {
	n := 0
	for _, l := range tl.Lanes {
		if l.Dense {
			n++
		}
	}
	return n
}

// outFactor is how many bins each written density bin merges, so that
// the dense lanes together write at most outBins bins.
func (tl *Timeline) outFactor() int {
	f := 1
	for d := tl.DenseLanes(); d*len(tl.TXBytes) > outBins*f; {
		f *= 2
	}
	return f
}

// Frames returns every frame of the trace, TX and RX.
func (tl *Timeline) Frames() int64 { return tl.TXFrames + tl.RXFrames }

// MarkCount returns the frames shown one mark each.
func (tl *Timeline) MarkCount() int {
	n := 0
	for _, l := range tl.Lanes {
		n += len(l.Marks)
	}
	return n
}

// summarize renders an event's detail for a tooltip: the scalar fields
// of a JSON object as k=v, or the compact JSON, cut to maxDetail bytes.
func summarize(detail json.RawMessage) string {
	if len(detail) == 0 {
		return ""
	}
	if len(detail) > maxDetailParse {
		return fmt.Sprintf("(a detail of %d bytes)", len(detail))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(detail, &obj); err != nil {
		var c bytes.Buffer
		if json.Compact(&c, detail) != nil {
			return ""
		}
		return cut(c.String(), maxDetail)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v := bytes.TrimSpace(obj[k])
		if len(v) == 0 || v[0] == '{' || v[0] == '[' {
			continue
		}
		var s string
		if v[0] == '"' && json.Unmarshal(v, &s) == nil {
			parts = append(parts, k+"="+s)
		} else {
			parts = append(parts, k+"="+string(v))
		}
	}
	return cut(strings.Join(parts, " "), maxDetail)
}

// cut shortens s to at most n bytes, at a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
