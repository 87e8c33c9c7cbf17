package tracetool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// traceFacts is what a trace holds, counted without the timeline: its
// frames (TX and RX), the lanes they fall in, its events, its END, the
// time of its first accepted SRDY.
type traceFacts struct {
	frames, tx int64
	lanes      map[laneKey]int64
	events     int
	end        bool
	srdyAt     int64
}

func factsOf(t testing.TB, data []byte) traceFacts {
	t.Helper()
	f := traceFacts{lanes: map[laneKey]int64{}, srdyAt: -1}
	r, err := NewReader(bytes.NewReader(data), "t", ReaderOptions{RX: true, OnRecord: func(rec capture.Record) {
		switch rec.Kind {
		case capture.KindEvent:
			f.events++
		case capture.KindEnd:
			f.end = true
		}
	}})
	require.NoError(t, err)
	for {
		fr, err := r.Next()
		if err != nil {
			break
		}
		f.frames++
		k := laneKey{dir: fr.Dir}
		if fr.Tag.Listed() {
			k.tag = fr.Tag
		}
		f.lanes[k]++
		if fr.Dir == capture.TX {
			f.tx++
			if fr.Result.Effect == dispatch.EffectBootComplete && f.srdyAt < 0 {
				f.srdyAt = fr.Time
			}
		}
	}
	return f
}

func timelineOf(t testing.TB, data []byte) (*Timeline, []byte, []byte) {
	t.Helper()
	tl, err := BuildTimeline(bytes.NewReader(data), "t.zst")
	require.NoError(t, err)
	var js, page bytes.Buffer
	require.NoError(t, tl.WriteChromeJSON(&js))
	require.NoError(t, tl.WriteHTML(&page))
	return tl, js.Bytes(), page.Bytes()
}

// checkTimeline checks a timeline and its files against the facts of its
// trace: every frame is in its lane, as a mark or in a density band,
// every event and the END are markers, the JSON is valid trace-event
// JSON that says the same, and the page shows the same.
func checkTimeline(t *testing.T, data []byte) (*Timeline, []byte, []byte) {
	f := factsOf(t, data)
	tl, js, page := timelineOf(t, data)
	assert.Equal(t, f.frames, tl.Frames())
	assert.Equal(t, f.tx, tl.TXFrames)
	assert.Len(t, tl.Lanes, len(f.lanes))
	var banded int64
	for _, l := range tl.Lanes {
		assert.Equal(t, f.lanes[l.key], l.Frames, l.Name)
		if l.Dense {
			assert.Empty(t, l.Marks, l.Name)
			var n int64
			for _, b := range l.Bins {
				n += b.Frames
			}
			assert.Equal(t, l.Frames, n, "%s: the bands count every frame", l.Name)
			banded += n
		} else {
			assert.Len(t, l.Marks, int(l.Frames), l.Name)
		}
	}
	markers := min(f.events, MaxMarkers)
	if f.end {
		markers++
	}
	assert.Len(t, tl.Markers, markers)
	if f.srdyAt >= 0 {
		assert.Equal(t, "boot", tl.Phases[0].Name)
		assert.Equal(t, clock(f.srdyAt), tl.Phases[0].End, "boot ends at the first accepted SRDY")
	}

	st, err := validateTraceEvents(js)
	require.NoError(t, err)
	assert.Equal(t, tl.MarkCount(), st.byCat["frame"]+st.byCat["frame,rejected"], "an instant event per frame mark")
	assert.Equal(t, banded, st.denseFrames, "the density slices count the banded frames")
	assert.Equal(t, markers, st.globals, "a global instant per marker")
	assert.Len(t, st.threadNames, len(tl.Lanes)+2, "a track per lane, and the phases and watchdog tracks")
	assert.Equal(t, len(tl.Phases), st.byCat["phase"])

	assert.Equal(t, int(tl.MarkCount()), strings.Count(string(page), `<line class="f `), "a mark per frame in the page")
	assert.Equal(t, len(tl.Lanes), strings.Count(string(page), `<g class="lane `))
	assert.Equal(t, markers, strings.Count(string(page), `<line class="marker`))
	return tl, js, page
}

func TestTimelineOfRealRuns(t *testing.T) {
	for _, path := range realTraces(t) {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			tl, js, page := checkTimeline(t, data)
			assert.Zero(t, tl.DenseLanes(), "a recorded run of a few hundred frames is drawn frame by frame")
			assert.Less(t, len(js), 1<<20)
			assert.Less(t, len(page), 1<<20)
		})
	}
}

// hostileMix writes a trace built to fill every bound at once: every
// listed tag and unlisted ones on TX and RX, a few of them past
// LaneMarks, thousands of events with large details, more SCST than
// MaxPhases, more pauses than MaxPauses, times over ten seconds.
func hostileMix(t testing.TB, perLane int) []byte {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Meta{Backend: "test", Scenario: "mix"})
	require.NoError(t, err)
	tags := append(wire.Tags(), wire.Tag(0x41414141), wire.Tag(0x01020304))
	detail, _ := json.Marshal(map[string]any{"id": 1, "name": strings.Repeat("x", 500), "regs": map[string]string{"RIP": "1"}})
	const span = 10_000_000_000
	var tx, rx []byte
	for i := range perLane {
		tx, rx = tx[:0], rx[:0]
		for _, tg := range tags {
			tx = wire.AppendFrame(tx, tg, []byte{byte(i)})
			rx = wire.AppendFrame(rx, tg, nil)
		}
		tx = append(tx, frame(wire.ScenarioStart, nil)...)
		tx = append(tx, frame(wire.WatchdogPause, nil)...)
		tx = append(tx, frame(wire.WatchdogResume, nil)...)
		at := int64(i) * span / int64(perLane)
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, at, tx))
		require.NoError(t, w.WriteData(capture.RX, capture.BulkPort, at, rx))
		if i%2 == 0 {
			require.NoError(t, w.WriteEvent(at, "snapshot", detail))
		}
	}
	// A lane that stays small: drawn frame by frame beside the dense ones.
	require.NoError(t, w.WriteData(capture.RX, 2, span, []byte("other port")))
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: span, Reason: "mix"}))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// TestTimelineStaysBounded: a trace that fills every lane past its mark
// bound, with more events, phases and pauses than the timeline keeps,
// gives files under 10 MB that still account for every frame.
func TestTimelineStaysBounded(t *testing.T) {
	data := hostileMix(t, 6000)
	tl, js, page := checkTimeline(t, data)
	t.Logf("%d frames in %d lanes (%d dense), %d markers: JSON %d bytes, HTML %d bytes", tl.Frames(), len(tl.Lanes), tl.DenseLanes(), len(tl.Markers), len(js), len(page))
	assert.Equal(t, 2*(len(wire.Tags())+1), len(tl.Lanes), "every listed tag and one lane of unlisted ones, each way")
	assert.Equal(t, len(tl.Lanes), tl.DenseLanes())
	assert.LessOrEqual(t, tl.MarkCount(), TotalMarks)
	assert.LessOrEqual(t, len(tl.Phases), MaxPhases+2)
	assert.Positive(t, tl.Phases[len(tl.Phases)-1].More, "the SCST past MaxPhases are folded into the last phase")
	assert.Len(t, tl.Pauses, MaxPauses)
	assert.Positive(t, tl.Pauses[MaxPauses-1].More)
	assert.Equal(t, int64(3000), tl.Events)
	assert.Less(t, len(js), 10<<20, "JSON under 10 MB")
	assert.Less(t, len(page), 10<<20, "HTML under 10 MB")
	assert.LessOrEqual(t, len(tl.TXBytes), Bins)
}

// TestTimelineLaneBudget: a lane at LaneMarks frames is drawn frame by
// frame, one more makes it dense (the control of the bound).
func TestTimelineLaneBudget(t *testing.T) {
	for _, n := range []int{LaneMarks, LaneMarks + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var stream []byte
			for range n {
				stream = wire.AppendFrame(stream, wire.Stimulus, nil)
			}
			var buf bytes.Buffer
			require.NoError(t, WriteTrace(&buf, streamOf(stream), capture.Meta{}, nil))
			tl, _, _ := checkTimeline(t, buf.Bytes())
			require.Len(t, tl.Lanes, 1)
			assert.Equal(t, n > LaneMarks, tl.Lanes[0].Dense)
		})
	}
}

// TestTimelineTimesGoingBack: a crafted trace whose times go backwards
// and below zero, with SCST before SRDY, still gives phases and pauses
// that never overlap, and valid JSON.
func TestTimelineTimesGoingBack(t *testing.T) {
	s := &replay.Stream{}
	s.Append(5000, frame(wire.ScenarioStart, nil))
	s.Append(-7000, frame(wire.SysRdy, nil))
	s.Append(9000, cat(frame(wire.WatchdogPause, nil), frame(wire.ScenarioStart, nil)))
	s.Append(1000, frame(wire.WatchdogResume, nil))
	s.Append(3000, frame(wire.WatchdogPause, nil))
	var buf bytes.Buffer
	require.NoError(t, WriteTrace(&buf, s, capture.Meta{}, &capture.End{TimeNS: 2000, Reason: "x"}))
	tl, _, _ := checkTimeline(t, buf.Bytes())
	for _, ss := range [][]Span{tl.Phases, tl.Pauses} {
		for i, sp := range ss {
			assert.GreaterOrEqual(t, sp.End, sp.Start, "%+v", sp)
			if i > 0 {
				assert.GreaterOrEqual(t, sp.Start, ss[i-1].End, "%+v after %+v", sp, ss[i-1])
			}
		}
	}
	assert.True(t, tl.Pauses[len(tl.Pauses)-1].Open, "the last SCPP is never resumed")
}

// TestTimelineHTMLIsSelfContainedAndEscaped: the page refers to nothing
// outside itself, and a trace's strings (scenario, event names and
// details, END reason) reach it escaped, never as markup; the JSON
// carries them intact.
func TestTimelineHTMLIsSelfContainedAndEscaped(t *testing.T) {
	evil := `</title><script>alert(1)</script><img src=x onerror=alert(2)>`
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Meta{Scenario: evil, Backend: "<b>"})
	require.NoError(t, err)
	require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, 10, frame(wire.SysRdy, nil)))
	detail, _ := json.Marshal(map[string]string{"x": evil})
	require.NoError(t, w.WriteEvent(20, evil, detail))
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: 30, Reason: evil}))
	require.NoError(t, w.Close())
	_, js, page := timelineOf(t, buf.Bytes())

	p := string(page)
	assert.NotContains(t, p, "<script>alert")
	assert.NotContains(t, p, "<img")
	assert.Contains(t, p, "&lt;script&gt;alert(1)&lt;/script&gt;", "the control: the text is there, escaped")
	assert.Equal(t, 1, strings.Count(p, "<script>"), "one script: the page's own")
	assert.Empty(t, fetches(p), "nothing fetched")
	assert.Len(t, fetches(`<p>x</p><img src="a.png"><link rel="stylesheet" href="a.css"><div style="background:url(b.png)">`+
		`<script>fetch("/x")</script>`), 4, "the control: what would fetch is found")
	for _, u := range regexp.MustCompile(`https?://[^"' ]+`).FindAllString(p, -1) {
		assert.Equal(t, "http://www.w3.org/2000/svg", u, "the only URL is the SVG namespace")
	}

	var doc struct {
		OtherData   TimelineSummary  `json:"otherData"`
		TraceEvents []map[string]any `json:"traceEvents"`
	}
	require.NoError(t, json.Unmarshal(js, &doc))
	assert.Equal(t, evil, doc.OtherData.Scenario)
	assert.NotContains(t, string(js), "<script>", "JSON escapes < and > too")
}

// fetches lists what in an HTML page would make a browser fetch
// something: a tag attribute naming a resource (values stripped first: a
// trace's text is only ever inside them, escaped), a CSS url() other
// than a local #fragment, an @import, a script's fetch or
// XMLHttpRequest.
func fetches(page string) []string {
	var out []string
	quoted := regexp.MustCompile(`"[^"]*"`)
	attr := regexp.MustCompile(`(?i)\s(src|href|action|srcset|poster|data)\s*=`)
	for _, tag := range regexp.MustCompile(`<[a-zA-Z][^>]*>`).FindAllString(page, -1) {
		if attr.MatchString(quoted.ReplaceAllString(tag, `""`)) {
			out = append(out, tag)
		}
	}
	for _, re := range []string{`(?i)@import`, `(?i)\bfetch\(`, `(?i)XMLHttpRequest`, `(?i)url\(\s*['"]?[^#'"\s)]`} {
		out = append(out, regexp.MustCompile(re).FindAllString(page, -1)...)
	}
	return out
}

// worstCase writes a trace built for the largest files: the most frame
// marks (four lanes of LaneMarks frames, every one rejected, so its
// action is long), every other lane dense, times near the top of the
// clock (long timestamps), over MaxMarkers events whose names and details
// are all characters that HTML and JSON escape six bytes wide.
func worstCase(t testing.TB) []byte {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Meta{Scenario: strings.Repeat(`"<`, 200)})
	require.NoError(t, err)
	marked := []wire.Tag{wire.SysRdy, wire.KernelAddrs, wire.Step, wire.Lifecycle} // shape-rejected with a payload of 3 bytes
	var dense []wire.Tag
	for _, tg := range append(wire.Tags(), wire.Tag(0x41414141)) {
		if !slices.Contains(marked, tg) {
			dense = append(dense, tg)
		}
	}
	const steps = 4200
	const top = int64(1) << 62
	for i := range steps {
		var tx, rx []byte
		for _, tg := range marked {
			if i < LaneMarks {
				tx = wire.AppendFrame(tx, tg, []byte{9, 9, 9})
			}
		}
		for _, tg := range dense {
			tx = wire.AppendFrame(tx, tg, []byte{9, 9, 9})
			rx = wire.AppendFrame(rx, tg, nil)
		}
		at := top + int64(i)*(top/steps)
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, at, tx))
		require.NoError(t, w.WriteData(capture.RX, capture.BulkPort, at, rx))
		if i%3 == 0 {
			detail, _ := json.Marshal(map[string]string{strings.Repeat("<", 40): strings.Repeat(`"`, 300)})
			require.NoError(t, w.WriteEvent(at, strings.Repeat(`<"`, 100), detail))
		}
	}
	require.NoError(t, w.WriteEnd(capture.End{TimeNS: math.MaxInt64, Reason: strings.Repeat("<", 300)}))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// TestTimelineFilesUnder10MBAtWorst: on the trace built for the largest
// files, both stay under 10 MB, and every frame is still accounted for.
func TestTimelineFilesUnder10MBAtWorst(t *testing.T) {
	data := worstCase(t)
	tl, js, page := checkTimeline(t, data)
	t.Logf("%d frames, %d marks, %d lanes (%d dense), %d markers: JSON %d bytes, HTML %d bytes",
		tl.Frames(), tl.MarkCount(), len(tl.Lanes), tl.DenseLanes(), len(tl.Markers), len(js), len(page))
	assert.Equal(t, TotalMarks, tl.MarkCount(), "the mark budget is used up")
	assert.Equal(t, len(tl.Lanes)-4, tl.DenseLanes())
	assert.Len(t, tl.Markers, MaxMarkers+1)
	assert.Less(t, len(js), 10<<20, "JSON under 10 MB")
	assert.Less(t, len(page), 10<<20, "HTML under 10 MB")
}
