package tracetool

import (
	"bufio"
	_ "embed"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// The page's script and style, inlined into every page: nothing is
// fetched from anywhere.
var (
	//go:embed timeline.js
	timelineJS string
	//go:embed timeline.css
	timelineCSS string
)

// HTML page geometry, in SVG user units (pixels at zoom 1).
const (
	labelW = 130  // the lane-name column
	plotW  = 1200 // the time axis
	rightM = 40
	axisH  = 26 // the tick row on top
	rowH   = 20 // one lane
	markH  = 14 // a mark's height inside its row
)

// hw writes the page, remembering the first write error.
type hw struct {
	w *bufio.Writer
}

func (h *hw) s(parts ...string) {
	for _, p := range parts {
		h.w.WriteString(p)
	}
}

// e writes a string from the trace, escaped for HTML text and attributes.
func (h *hw) e(s string) { h.w.WriteString(html.EscapeString(s)) }

func num(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

func secs(ns int64) string { return strconv.FormatFloat(float64(ns)/1e9, 'f', 6, 64) + "s" }

// WriteHTML writes tl as one self-contained HTML page: an inline SVG of
// the lanes over time (the phases, the watchdog, a lane per direction
// and tag, the bytes per second, the events as markers across every
// lane) and a small inline script for zoom (wheel, drag, buttons, keys)
// and hover details. The page fetches nothing. The encoding is in
// docs/trace-tools.md.
func (tl *Timeline) WriteHTML(dst io.Writer) error {
	h := &hw{w: bufio.NewWriterSize(dst, 64<<10)}
	x := func(t int64) float64 { return float64(clock(t)) * plotW / float64(tl.EndNS) }
	sum := tl.summary()

	type row struct {
		label, detail, class string
	}
	var rows []row
	rows = append(rows, row{"phases", "boot → SYS_RDY → SCST … → end", "meta"}, row{"watchdog", "SCPP → SCRR pauses", "meta"})
	for _, l := range tl.Lanes {
		rows = append(rows, row{l.Name, laneSummary(l), "lane"})
	}
	hasRX := sumOf(tl.RXBytes) > 0
	rows = append(rows, row{"TX bytes/s", "bulk-port TX bytes per second", "meta"})
	if hasRX {
		rows = append(rows, row{"RX bytes/s", "bulk-port RX bytes per second", "meta"})
	}
	moreEvents := sumOf(tl.EventBins) > 0
	if moreEvents {
		rows = append(rows, row{"more events", fmt.Sprintf("events past the first %d, per bin", MaxMarkers), "meta"})
	}
	height := axisH + len(rows)*rowH + 8
	width := labelW + plotW + rightM

	h.s("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>ktstr timeline: ")
	h.e(tl.title())
	h.s("</title>\n<style>\n", timelineCSS, "</style></head>\n<body>\n<header><h1>ktstr timeline: ")
	h.e(tl.title())
	h.s("</h1>\n<p class=\"meta\">")
	var facts []string
	if sum.Backend != "" {
		facts = append(facts, "backend "+sum.Backend)
	}
	if sum.Kernel != "" {
		facts = append(facts, "kernel "+sum.Kernel)
	}
	if sum.StartTime != "" {
		facts = append(facts, "started "+sum.StartTime)
	}
	facts = append(facts, "run "+secs(tl.EndNS))
	if sum.End != "" {
		facts = append(facts, "ended "+sum.End)
	}
	if sum.Truncated {
		facts = append(facts, fmt.Sprintf("truncated at byte %d", tl.Truncation.At))
	}
	h.e(strings.Join(facts, " · "))
	h.s("</p>\n<p id=\"summary\" data-frames=\"", strconv.FormatInt(tl.Frames(), 10),
		"\" data-lanes=\"", strconv.Itoa(len(tl.Lanes)),
		"\" data-markers=\"", strconv.Itoa(len(tl.Markers)), "\">")
	h.e(fmt.Sprintf("%d frames (%d TX, %d RX) in %d lanes (%d as density bands), %d markers (%d events).",
		tl.Frames(), tl.TXFrames, tl.RXFrames, len(tl.Lanes), tl.DenseLanes(), len(tl.Markers), tl.Events))
	h.s("</p>\n<p id=\"status\">The page's script has not run: zoom and hover need it.</p>\n")
	h.s(`<p class="controls"><button id="zin" type="button">zoom in</button> <button id="zout" type="button">zoom out</button> <button id="zreset" type="button">reset</button> <span class="hint">wheel to zoom at the cursor, drag to pan, double-click or 0 to reset; hover a mark for its frame</span> <span id="cursor"></span></p>`)
	h.s("\n<p class=\"legend\"><span class=\"k internal\">internal</span> <span class=\"k verdict\">verdict</span> <span class=\"k h2g\">host→guest</span> <span class=\"k unknown\">unknown tag</span> <span class=\"k rej\">rejected</span> <span class=\"k torn\">torn (crc, pad)</span> <span class=\"k mk\">event marker</span></p>\n</header>\n")

	fmt.Fprintf(h.w, "<svg id=\"tl\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" data-labelw=\"%d\" data-plotw=\"%d\" data-endns=\"%d\" data-axish=\"%d\">\n",
		width, height, width, height, labelW, plotW, tl.EndNS, axisH)
	fmt.Fprintf(h.w, "<defs><clipPath id=\"clip\"><rect x=\"%d\" y=\"0\" width=\"%d\" height=\"%d\"/></clipPath></defs>\n", labelW, plotW, height)
	// Row backgrounds and labels.
	h.s("<g id=\"labels\">\n")
	for i, r := range rows {
		y := axisH + i*rowH
		fmt.Fprintf(h.w, "<rect class=\"rowbg r%d\" x=\"0\" y=\"%d\" width=\"%d\" height=\"%d\"/>", i%2, y, width, rowH)
		fmt.Fprintf(h.w, "<text class=\"ll %s\" x=\"4\" y=\"%d\" data-d=\"", r.class, y+14)
		h.e(r.label + ": " + r.detail)
		h.s("\">")
		h.e(r.label)
		h.s("</text>\n")
	}
	h.s("</g>\n<g id=\"axis\"></g>\n")
	fmt.Fprintf(h.w, "<g clip-path=\"url(#clip)\"><g id=\"plot\" transform=\"translate(%d,0)\">\n", labelW)

	rowY := func(i int) int { return axisH + i*rowH + (rowH-markH)/2 }
	// Phases and pauses.
	spans := func(i int, class string, ss []Span) {
		fmt.Fprintf(h.w, "<g class=\"spans %s\" transform=\"translate(0,%d)\">", class, rowY(i))
		for k, s := range ss {
			d := s.Name + ": " + secs(s.Start) + " – " + secs(s.End)
			if s.More > 0 {
				d += fmt.Sprintf(" (and %d more folded in)", s.More)
			}
			fmt.Fprintf(h.w, "<rect class=\"sp s%d\" x=\"%s\" width=\"%s\" height=\"%d\" data-d=\"", k%2, num(x(s.Start)), num(max(x(s.End)-x(s.Start), 1)), markH)
			h.e(d)
			h.s("\"/>")
		}
		h.s("</g>\n")
	}
	spans(0, "phases", tl.Phases)
	spans(1, "pauses", tl.Pauses)

	// Lanes.
	factor := tl.outFactor()
	binW := float64(tl.BinNS) * float64(factor) * plotW / float64(tl.EndNS)
	for i, l := range tl.Lanes {
		fmt.Fprintf(h.w, "<g class=\"lane %s\" data-lane=\"", classCSS(l))
		h.e(l.Name)
		fmt.Fprintf(h.w, "\" transform=\"translate(0,%d)\">\n", rowY(2+i))
		for _, m := range l.Marks {
			cls := "f a"
			if l.Dir == capture.TX && !m.Result.Accepted() {
				cls = "f r"
				if !m.Intact {
					cls = "f t"
				}
			}
			xs := num(x(m.Time))
			fmt.Fprintf(h.w, "<line class=\"%s\" x1=\"%s\" x2=\"%s\" y2=\"%d\" data-d=\"", cls, xs, xs, markH)
			h.e(fmt.Sprintf("#%d %s at %s, offset %d, len %d: %s", m.Index, m.Tag, secs(m.Time), m.Offset, m.Len, markAction(l, &m)))
			h.s("\"/>\n")
		}
		bins := tl.laneBins(l, factor)
		var peak int64
		for _, b := range bins {
			peak = max(peak, b.Frames)
		}
		for b, bin := range bins {
			if bin.Frames == 0 {
				continue
			}
			op := 0.15 + 0.85*logScale(bin.Frames, peak)
			t0 := int64(b) * tl.BinNS * int64(factor)
			fmt.Fprintf(h.w, "<rect class=\"d\" x=\"%s\" width=\"%s\" height=\"%d\" fill-opacity=\"%.2f\" data-n=\"%d\" data-d=\"", num(float64(b)*binW), num(binW), markH, op, bin.Frames)
			h.e(fmt.Sprintf("%s: %d frames, %d rejected, %s – %s", l.Name, bin.Frames, bin.Rejected, secs(t0), secs(t0+tl.BinNS*int64(factor))))
			h.s("\"/>")
			if bin.Rejected > 0 {
				fmt.Fprintf(h.w, "<rect class=\"dr\" x=\"%s\" y=\"%d\" width=\"%s\" height=\"4\" fill-opacity=\"%.2f\"/>", num(float64(b)*binW), markH-4, num(binW), 0.3+0.7*logScale(bin.Rejected, bin.Frames))
			}
			h.s("\n")
		}
		h.s("</g>\n")
	}
	// Bytes per second and the events past the marker limit, as bars.
	bars := func(i int, name string, bins []int64, rate bool) {
		var peak int64
		for _, v := range bins {
			peak = max(peak, v)
		}
		bw := float64(tl.BinNS) * plotW / float64(tl.EndNS)
		fmt.Fprintf(h.w, "<g class=\"bars\" transform=\"translate(0,%d)\">", rowY(i))
		for b, v := range bins {
			if v == 0 {
				continue
			}
			ht := max(1, float64(markH)*float64(v)/float64(peak))
			t0 := int64(b) * tl.BinNS
			what := fmt.Sprintf("%d events", v)
			if rate {
				what = fmt.Sprintf("%.0f bytes/s (%d bytes)", float64(v)*1e9/float64(tl.BinNS), v)
			}
			fmt.Fprintf(h.w, "<rect class=\"bw\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" data-d=\"", num(float64(b)*bw), num(markH-ht), num(bw), num(ht))
			h.e(fmt.Sprintf("%s: %s, %s – %s", name, what, secs(t0), secs(t0+tl.BinNS)))
			h.s("\"/>")
		}
		h.s("</g>\n")
	}
	next := 2 + len(tl.Lanes)
	bars(next, "TX", tl.TXBytes, true)
	next++
	if hasRX {
		bars(next, "RX", tl.RXBytes, true)
		next++
	}
	if moreEvents {
		bars(next, "more events", tl.EventBins, false)
	}
	// Markers across every lane.
	h.s("<g id=\"markers\">\n")
	for _, m := range tl.Markers {
		cls := "marker"
		if m.End {
			cls += " end"
		}
		xs := num(x(m.Time))
		fmt.Fprintf(h.w, "<line class=\"%s\" x1=\"%s\" x2=\"%s\" y1=\"%d\" y2=\"%d\" data-d=\"", cls, xs, xs, axisH, height-8)
		d := m.Name + " at " + secs(m.Time)
		if m.Detail != "" {
			d += ": " + m.Detail
		}
		h.e(d)
		h.s("\"/>\n")
	}
	h.s("</g>\n</g></g>\n")
	// Phase labels: outside the zoomed group, placed by the script.
	h.s("<g id=\"plabels\">")
	for _, s := range tl.Phases {
		fmt.Fprintf(h.w, "<text class=\"pl\" x=\"%s\" y=\"%d\" data-x0=\"%s\" data-x1=\"%s\">", num(float64(labelW)+x(s.Start)+3), rowY(0)+11, num(x(s.Start)), num(x(s.End)))
		h.e(s.Name)
		h.s("</text>")
	}
	h.s("</g>\n</svg>\n<div id=\"tip\" hidden></div>\n<script>\n", timelineJS, "</script>\n</body></html>\n")
	return h.w.Flush()
}

func sumOf(v []int64) int64 {
	var n int64
	for _, x := range v {
		n += x
	}
	return n
}

// logScale maps n in [1, peak] to [0, 1] logarithmically.
func logScale(n, peak int64) float64 {
	if peak <= 1 || n <= 1 {
		if n >= peak {
			return 1
		}
		return 0
	}
	return math.Log2(float64(n)) / math.Log2(float64(peak))
}

func reasonName(r int) string { return dispatch.Reason(r).String() }

// classCSS is a lane's CSS class: its tag class, or h2g for RX lanes.
func classCSS(l *Lane) string {
	if l.Dir == capture.RX {
		return "h2g"
	}
	switch l.Class {
	case wire.Internal:
		return "internal"
	case wire.Verdict:
		return "verdict"
	case wire.HostToGuest:
		return "forged"
	}
	return "unknown"
}

// laneSummary is a lane label's hover text.
func laneSummary(l *Lane) string {
	s := fmt.Sprintf("%d frames, %d payload bytes", l.Frames, l.Bytes)
	if l.Dir == capture.TX {
		s += fmt.Sprintf(", %d accepted", l.Accepted)
		for r, n := range l.Rejected {
			if n > 0 {
				s += fmt.Sprintf(", %d %s", n, reasonName(r))
			}
		}
	}
	if l.Dense {
		s += " (density bands)"
	}
	return s
}
