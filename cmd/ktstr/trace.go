package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/replay"
)

func runTrace(args []string, stdout, stderr io.Writer) error {
	const sub = "show|stat|import|minimize|diff|timeline"
	if len(args) == 0 {
		return usagef("trace: missing subcommand; usage: ktstr trace %s ...", sub)
	}
	switch args[0] {
	case "show":
		return traceShow(args[1:], stdout, stderr)
	case "stat":
		return traceStat(args[1:], stdout, stderr)
	case "import":
		return traceImport(args[1:], stdout, stderr)
	case "minimize":
		return traceMinimize(args[1:], stdout, stderr)
	case "diff":
		return traceDiff(args[1:], stdout, stderr)
	case "timeline":
		return traceTimeline(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintf(stderr, "usage: ktstr trace %s [flags] ...\n", sub)
		return nil
	}
	return usagef("trace: unknown subcommand %q; use %s", args[0], sub)
}

// frameEvent is one frame of a trace as the gates judged it.
type frameEvent struct {
	offset int64
	timeNS int64
	dir    capture.Direction
	tag    wire.Tag
	len    int
	intact bool
	result dispatch.Result
}

// walked is what walkTrace read: the metadata, the outcome its TX
// frames give, and where the trace ended early, if it did.
type walked struct {
	meta      capture.Meta
	outcome   dispatch.Outcome
	stats     dispatch.Stats     // of the TX stream
	truncated *replay.Truncation // the trace ends early; what came before it was walked
}

// walkTrace frames a trace's bulk-port deliveries in both directions
// through Sessions clocked by the recorded times, as replay does: TX
// frames are judged by the gates; RX frames (host→guest, written by the
// host) are framed by a Session of their own and not judged. It holds
// nothing per frame or per record: onFrame and onRecord see each once.
// An END record's outcome is checked as replay checks it, so every
// command takes or refuses the same traces. A trace that ends early is
// walked up to where it ends and reported in walked.truncated, not as
// an error. onStart, if set, runs once the header and metadata have
// been read, before any record: a command prints nothing before it, so
// a file that is no trace prints nothing but the error.
func walkTrace(path string, onStart func(capture.Meta), onFrame func(frameEvent), onRecord func(capture.Record)) (walked, error) {
	f, err := openTrace(path)
	if err != nil {
		return walked{}, err
	}
	defer f.Close()
	r, err := capture.NewReader(f, capture.WithDecoders(runtime.GOMAXPROCS(0)))
	if err != nil {
		return walked{}, fmt.Errorf("%s: %w: %w", path, replay.ErrBadTrace, err)
	}
	defer r.Close()
	if onStart != nil {
		onStart(r.Meta())
	}
	var w walked
	tx, rx := dispatch.NewSession(), dispatch.NewSession()
	var dir capture.Direction
	emit := func(m *dispatch.Message, res dispatch.Result) {
		if onFrame == nil {
			return
		}
		ev := frameEvent{offset: m.Offset, timeNS: m.Time, dir: dir, tag: m.Tag, len: len(m.Payload), intact: m.Intact()}
		if dir == capture.TX {
			ev.result = res
		}
		onFrame(ev)
	}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, capture.ErrTruncated) {
			w.truncated = replay.TruncationOf(r, err)
			break
		}
		if err != nil {
			w.meta = r.Meta()
			return w, fmt.Errorf("%s: %w: %w", path, replay.ErrBadTrace, err)
		}
		if rec.Kind == capture.KindEnd {
			if err := checkEndOutcome(rec.End); err != nil {
				return w, fmt.Errorf("%s: %w: %w", path, replay.ErrBadTrace, err)
			}
		}
		if onRecord != nil {
			onRecord(rec)
		}
		if rec.Kind != capture.KindData || rec.Port != capture.BulkPort {
			continue
		}
		dir = rec.Dir
		s := tx
		if dir == capture.RX {
			s = rx
		}
		s.Feed(rec.TimeNS, rec.Data, emit)
	}
	w.meta, w.outcome, w.stats = r.Meta(), tx.Finish(), tx.Stats()
	return w, nil
}

// checkEndOutcome refuses an END record whose outcome is not the outcome
// object of docs/protocol.md §7, with the words replay uses.
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

func dirName(d capture.Direction) string {
	if d == capture.RX {
		return "RX"
	}
	return "TX"
}

// traceShow prints one line per frame and event as it reads them, in
// fixed-width columns (a tabwriter would hold every line until the end).
// Every string from the trace (event names and details, the END reason,
// the metadata) is printed through safe or safeJSON.
func traceShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace show", "TRACE", stderr)
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("trace show: give exactly one trace")
	}
	path := pos[0]
	out := bufio.NewWriter(stdout)
	line := func(off, t, dir, tag, n, intact, action string) {
		fmt.Fprintf(out, "%-12s %-12s %-3s %-10s %-8s %-6s %s\n", off, t, dir, tag, n, intact, action)
	}
	var end *capture.End
	w, err := walkTrace(path, func(capture.Meta) {
		line("OFFSET", "TIME", "DIR", "TAG", "LEN", "INTACT", "ACTION")
	}, func(ev frameEvent) {
		action := "host→guest"
		if ev.dir == capture.TX {
			action = ev.result.Effect.String()
			if !ev.result.Accepted() {
				action = "reject: " + ev.result.Reject.String()
			}
		}
		intact := "no"
		if ev.intact {
			intact = "yes"
		}
		line(fmt.Sprint(ev.offset), fmtTime(ev.timeNS), dirName(ev.dir), ev.tag.String(), fmt.Sprint(ev.len), intact, action)
	}, func(rec capture.Record) {
		switch rec.Kind {
		case capture.KindEvent:
			detail := ""
			if len(rec.Detail) > 0 {
				detail = safeJSON(rec.Detail)
			}
			line("-", fmtTime(rec.TimeNS), "EV", safe(rec.Name), "-", "-", detail)
		case capture.KindEnd:
			end = rec.End
		}
	})
	if err != nil {
		out.Flush()
		return usageErr(fmt.Errorf("trace show: %w", err))
	}
	o := &w.outcome
	fmt.Fprintf(out, "TX: %d frames in %d bytes; verdicts kept %d, dropped %d past the budget of %d\n",
		w.stats.Frames, w.stats.Bytes, len(o.Verdicts), o.VerdictsDropped, dispatch.MaxVerdicts)
	if t := o.Rejected.TruncatedTailBytes; t > 0 {
		fmt.Fprintf(out, "stream ends inside a frame: %d bytes left unframed\n", t)
	}
	if end != nil {
		fmt.Fprintf(out, "END at %s: %s, exit status %d\n", fmtTime(end.TimeNS), safe(end.Reason), end.ExitStatus)
	}
	if w.truncated != nil {
		fmt.Fprintf(out, "truncated at byte %d: the lines above are what it holds\n", w.truncated.At)
	}
	fmt.Fprintf(out, "trace of %s run, scenario %s\n", safe(w.meta.Backend), strconv.Quote(w.meta.Scenario))
	if err := out.Flush(); err != nil {
		return usageErr(fmt.Errorf("trace show: writing the output: %w", err))
	}
	if w.truncated != nil {
		warnTruncated(stderr, "trace show", path, w.truncated)
	}
	return nil
}

func fmtTime(ns int64) string {
	return fmt.Sprintf("%.6fs", float64(ns)/1e9)
}

// otherTags is the row trace stat folds every unlisted tag into: a
// trace may hold four billion of them, and a row each is memory a
// trace file would choose.
const otherTags = "other"

func traceStat(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace stat", "TRACE", stderr)
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("trace stat: give exactly one trace")
	}
	path := pos[0]
	type tagStat struct {
		frames, bytes, accepted, rejected int64
	}
	// One row per listed tag and one for every other: bounded whatever
	// the trace holds.
	tags := map[string]*tagStat{}
	reasons := map[dispatch.Reason]int64{}
	var deliveries [2]int64
	var dataBytes [2]int64
	var last int64
	var events int
	var end *capture.End
	w, err := walkTrace(path, nil, func(ev frameEvent) {
		if ev.dir != capture.TX {
			return
		}
		key := otherTags
		if ev.tag.Listed() {
			key = ev.tag.String()
		}
		s := tags[key]
		if s == nil {
			s = &tagStat{}
			tags[key] = s
		}
		s.frames++
		s.bytes += int64(ev.len)
		if ev.result.Accepted() {
			s.accepted++
		} else {
			s.rejected++
			reasons[ev.result.Reject]++
		}
	}, func(rec capture.Record) {
		last = max(last, rec.TimeNS)
		switch rec.Kind {
		case capture.KindData:
			i := 0
			if rec.Dir == capture.RX {
				i = 1
			}
			deliveries[i]++
			dataBytes[i] += int64(len(rec.Data))
		case capture.KindEvent:
			events++
		case capture.KindEnd:
			end = rec.End
		}
	})
	if err != nil {
		return usageErr(fmt.Errorf("trace stat: %w", err))
	}
	out := bufio.NewWriter(stdout)
	meta := w.meta
	fmt.Fprintf(out, "trace %s: backend %s %s, scenario %s, kernel %s\n", safe(path), safe(meta.Backend), safe(meta.Accel), strconv.Quote(meta.Scenario), safe(meta.KernelRelease))
	if !meta.StartTime.IsZero() {
		fmt.Fprintf(out, "started %s, last record at %s\n", meta.StartTime.Format(time.RFC3339), fmtTime(last))
	}
	fmt.Fprintf(out, "TX: %d deliveries, %d bytes; RX: %d deliveries, %d bytes; %d events\n",
		deliveries[0], dataBytes[0], deliveries[1], dataBytes[1], events)
	switch {
	case w.truncated != nil:
		fmt.Fprintf(out, "ended: truncated at byte %d; the counts are of what it holds\n", w.truncated.At)
	case end != nil:
		fmt.Fprintf(out, "ended: %s at %s, exit status %d\n", safe(end.Reason), fmtTime(end.TimeNS), end.ExitStatus)
	default:
		fmt.Fprintln(out, "ended: no END record (imported or cut short)")
	}
	o := &w.outcome
	fmt.Fprintf(out, "verdicts: %d kept, %d dropped past the budget of %d (dropped digest %s)\n",
		len(o.Verdicts), o.VerdictsDropped, dispatch.MaxVerdicts, o.VerdictsDroppedSHA256)
	keys := make([]string, 0, len(tags))
	for t := range tags {
		keys = append(keys, t)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TAG\tFRAMES\tPAYLOAD BYTES\tACCEPTED\tREJECTED\t")
	for _, t := range keys {
		s := tags[t]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", t, s.frames, s.bytes, s.accepted, s.rejected)
	}
	tw.Flush()
	fmt.Fprintln(out, "rejected by reason:")
	anyReason := false
	for _, r := range dispatch.Reasons() {
		if n := reasons[r]; n > 0 {
			fmt.Fprintf(out, "  %-15s %d\n", r, n)
			anyReason = true
		}
	}
	if !anyReason {
		fmt.Fprintln(out, "  none")
	}
	if err := out.Flush(); err != nil {
		return usageErr(fmt.Errorf("trace stat: writing the output: %w", err))
	}
	if w.truncated != nil {
		warnTruncated(stderr, "trace stat", path, w.truncated)
	}
	return nil
}

func traceImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace import", "--raw FILE [--chunk N] -o OUT.zst", stderr)
	raw := fs.String("raw", "", "raw TX byte stream to import (e.g. a QEMU chardev file)")
	chunk := fs.Int("chunk", 0, "split into deliveries of N bytes (0: one delivery)")
	out := fs.String("o", "", "trace to write, or - for standard output")
	force := fs.Bool("force", false, "replace the -o file if it exists")
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	switch {
	case *raw == "":
		return usagef("trace import: --raw FILE is required")
	case *out == "":
		return usagef("trace import: -o OUT.zst is required (or -o - for standard output)")
	case *chunk < 0 || *chunk > capture.MaxDataSize:
		return usagef("trace import: --chunk %d: want 0 (one delivery) to %d", *chunk, capture.MaxDataSize)
	case len(pos) > 0:
		return usagef("trace import: unexpected argument %q", pos[0])
	}
	toStdout := outfile.IsStdout(*out)
	if toStdout && isTerminal(stdout) {
		return usagef("trace import: -o -: standard output is a terminal, and a trace is binary; redirect it to a file or a pipe")
	}
	if !toStdout {
		// Checked before the input is read: an input-sized wait, then a
		// refusal, is what this rule is here to avoid.
		if err := outfile.Check(*out, outfile.Options{Force: *force, Inputs: []string{*raw}, StdoutOK: true}); err != nil {
			return usageErr(fmt.Errorf("trace import: %w", err))
		}
	}
	src, err := openInput(*raw, "--raw", true)
	if err != nil {
		return fmt.Errorf("trace import: %w", err)
	}
	defer src.Close()
	meta := capture.Meta{ToolVersion: toolVersion(), Backend: "import", CommandLine: os.Args,
		StartTime: time.Now().UTC(), Extra: map[string]string{"raw": *raw}}
	if toStdout {
		if err := capture.ImportRaw(stdout, src, *chunk, meta); err != nil {
			return usageErr(fmt.Errorf("trace import: %w", err))
		}
		return nil
	}
	// Written next to the destination and renamed, so a failed import
	// never leaves a half-written trace under the requested name.
	dst, err := outfile.Create(*out, outfile.Options{Force: *force, Inputs: []string{*raw}, StdoutOK: true})
	if err != nil {
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	defer dst.Abort()
	if err := capture.ImportRaw(dst, src, *chunk, meta); err != nil {
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	if err := dst.Commit(); err != nil {
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	fmt.Fprintf(stderr, "wrote %s\n", safe(*out))
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	if c, ok := w.(*checkedWriter); ok {
		w = c.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
