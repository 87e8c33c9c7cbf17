package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

func runTrace(args []string, stdout, stderr io.Writer) error {
	const sub = "show|stat|import"
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
	stats     dispatch.Stats // of the TX stream
	truncated error          // the trace ends early; what came before it was walked
}

// walkTrace frames a trace's bulk-port deliveries in both directions
// through Sessions clocked by the recorded times, as replay does: TX
// frames are judged by the gates; RX frames (host→guest, written by the
// host) are framed by a Session of their own and not judged. It holds
// nothing per frame or per record: onFrame and onRecord see each once.
func walkTrace(path string, onFrame func(frameEvent), onRecord func(capture.Record)) (walked, error) {
	f, err := os.Open(path)
	if err != nil {
		return walked{}, err
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		return walked{}, fmt.Errorf("%s: %w", path, err)
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
			w.truncated = err
			break
		}
		if err != nil {
			w.meta = r.Meta()
			return w, fmt.Errorf("%s: %w", path, err)
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

func dirName(d capture.Direction) string {
	if d == capture.RX {
		return "RX"
	}
	return "TX"
}

// traceShow prints one line per frame and event as it reads them, in
// fixed-width columns (a tabwriter would hold every line until the end).
func traceShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace show", "TRACE", stderr)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("trace show: give exactly one trace")
	}
	out := bufio.NewWriter(stdout)
	header := false
	line := func(off, t, dir, tag, n, intact, action string) {
		if !header {
			header = true
			fmt.Fprintf(out, "%-12s %-12s %-3s %-10s %-8s %-6s %s\n", "OFFSET", "TIME", "DIR", "TAG", "LEN", "INTACT", "ACTION")
		}
		fmt.Fprintf(out, "%-12s %-12s %-3s %-10s %-8s %-6s %s\n", off, t, dir, tag, n, intact, action)
	}
	var end *capture.End
	w, err := walkTrace(fs.Arg(0), func(ev frameEvent) {
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
			line("-", fmtTime(rec.TimeNS), "EV", rec.Name, "-", "-", string(rec.Detail))
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
		fmt.Fprintf(out, "END at %s: %s, exit status %d\n", fmtTime(end.TimeNS), end.Reason, end.ExitStatus)
	}
	fmt.Fprintf(out, "trace of %s run, scenario %q\n", w.meta.Backend, w.meta.Scenario)
	if err := out.Flush(); err != nil {
		return fmt.Errorf("trace show: writing the output: %w", err)
	}
	if w.truncated != nil {
		return usageErr(fmt.Errorf("trace show: %s: %w (the lines above are what it holds)", fs.Arg(0), w.truncated))
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
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("trace stat: give exactly one trace")
	}
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
	w, err := walkTrace(fs.Arg(0), func(ev frameEvent) {
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
	fmt.Fprintf(out, "trace %s: backend %s %s, scenario %q, kernel %s\n", fs.Arg(0), meta.Backend, meta.Accel, meta.Scenario, meta.KernelRelease)
	if !meta.StartTime.IsZero() {
		fmt.Fprintf(out, "started %s, last record at %s\n", meta.StartTime.Format(time.RFC3339), fmtTime(last))
	}
	fmt.Fprintf(out, "TX: %d deliveries, %d bytes; RX: %d deliveries, %d bytes; %d events\n",
		deliveries[0], dataBytes[0], deliveries[1], dataBytes[1], events)
	switch {
	case w.truncated != nil:
		fmt.Fprintf(out, "ended: cut short (%v); the counts are of what it holds\n", w.truncated)
	case end != nil:
		fmt.Fprintf(out, "ended: %s at %s, exit status %d\n", end.Reason, fmtTime(end.TimeNS), end.ExitStatus)
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
		return fmt.Errorf("trace stat: writing the output: %w", err)
	}
	if w.truncated != nil {
		return usageErr(fmt.Errorf("trace stat: %s: %w (the counts above are what it holds)", fs.Arg(0), w.truncated))
	}
	return nil
}

func traceImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace import", "--raw FILE [--chunk N] -o OUT.zst", stderr)
	raw := fs.String("raw", "", "raw TX byte stream to import (e.g. a QEMU chardev file)")
	chunk := fs.Int("chunk", 0, "split into deliveries of N bytes (0: one delivery)")
	out := fs.String("o", "", "trace to write")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	switch {
	case *raw == "":
		return usagef("trace import: --raw FILE is required")
	case *out == "":
		return usagef("trace import: -o OUT.zst is required")
	case *chunk < 0:
		return usagef("trace import: --chunk must be ≥ 0, got %d", *chunk)
	case fs.NArg() > 0:
		return usagef("trace import: unexpected argument %q", fs.Arg(0))
	}
	src, err := os.Open(*raw)
	if err != nil {
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	defer src.Close()
	// Write next to the destination and rename, so a failed import never
	// leaves a half-written trace under the requested name.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".ktstr-import-*")
	if err != nil {
		return usageErr(fmt.Errorf("trace import: cannot write %s: %w", *out, err))
	}
	defer os.Remove(tmp.Name())
	meta := capture.Meta{ToolVersion: toolVersion(), Backend: "import", CommandLine: os.Args,
		StartTime: time.Now().UTC(), Extra: map[string]string{"raw": *raw}}
	if err := capture.ImportRaw(tmp, src, *chunk, meta); err != nil {
		tmp.Close()
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	if err := tmp.Close(); err != nil {
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return usageErr(fmt.Errorf("trace import: %w", err))
	}
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	return nil
}
