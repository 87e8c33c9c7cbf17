package main

import (
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

// walkTrace frames a trace's bulk-port deliveries in both directions and
// judges TX frames with the production Dispatch, clocked by the recorded
// times as replay does. RX frames (host→guest) are framed but not judged.
func walkTrace(path string, onFrame func(frameEvent), onRecord func(capture.Record)) (capture.Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return capture.Meta{}, err
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		return capture.Meta{}, fmt.Errorf("%s: %w", path, err)
	}
	var now int64
	sinks := dispatch.NewSinks(dispatch.ClockFunc(func() int64 { return now }))
	sinks.DigestOnly = true
	tx, rx := dispatch.NewAssembler(), dispatch.NewAssembler()
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Meta(), nil
		}
		if err != nil {
			return r.Meta(), fmt.Errorf("%s: %w", path, err)
		}
		if onRecord != nil {
			onRecord(rec)
		}
		if rec.Kind != capture.KindData || rec.Port != capture.BulkPort {
			continue
		}
		now = rec.TimeNS
		a := tx
		if rec.Dir == capture.RX {
			a = rx
		}
		a.Feed(rec.Data)
		for {
			m, ok := a.Next()
			if !ok {
				break
			}
			ev := frameEvent{offset: m.Offset, timeNS: rec.TimeNS, dir: rec.Dir, tag: m.Tag, len: len(m.Payload), intact: m.Intact()}
			if rec.Dir == capture.TX {
				ev.result = dispatch.Dispatch(&m, sinks)
			}
			if onFrame != nil {
				onFrame(ev)
			}
		}
	}
}

func dirName(d capture.Direction) string {
	if d == capture.RX {
		return "RX"
	}
	return "TX"
}

func traceShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace show", "TRACE", stderr)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("trace show: give exactly one trace")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OFFSET\tTIME\tDIR\tTAG\tLEN\tINTACT\tACTION")
	var end *capture.End
	meta, err := walkTrace(fs.Arg(0), func(ev frameEvent) {
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
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", ev.offset, fmtTime(ev.timeNS), dirName(ev.dir), ev.tag, ev.len, intact, action)
	}, func(rec capture.Record) {
		switch rec.Kind {
		case capture.KindEvent:
			fmt.Fprintf(tw, "-\t%s\tEV\t%s\t-\t-\t%s\n", fmtTime(rec.TimeNS), rec.Name, string(rec.Detail))
		case capture.KindEnd:
			end = rec.End
		}
	})
	tw.Flush()
	if err != nil {
		return usageErr(fmt.Errorf("trace show: %w", err))
	}
	if end != nil {
		fmt.Fprintf(stdout, "END at %s: %s, exit status %d\n", fmtTime(end.TimeNS), end.Reason, end.ExitStatus)
	}
	fmt.Fprintf(stdout, "trace of %s run, scenario %q\n", meta.Backend, meta.Scenario)
	return nil
}

func fmtTime(ns int64) string {
	return fmt.Sprintf("%.6fs", float64(ns)/1e9)
}

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
	tags := map[wire.Tag]*tagStat{}
	reasons := map[dispatch.Reason]int64{}
	var deliveries [2]int64
	var dataBytes [2]int64
	var last int64
	var events int
	var end *capture.End
	meta, err := walkTrace(fs.Arg(0), func(ev frameEvent) {
		if ev.dir != capture.TX {
			return
		}
		s := tags[ev.tag]
		if s == nil {
			s = &tagStat{}
			tags[ev.tag] = s
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
	fmt.Fprintf(stdout, "trace %s: backend %s %s, scenario %q, kernel %s\n", fs.Arg(0), meta.Backend, meta.Accel, meta.Scenario, meta.KernelRelease)
	if !meta.StartTime.IsZero() {
		fmt.Fprintf(stdout, "started %s, last record at %s\n", meta.StartTime.Format(time.RFC3339), fmtTime(last))
	}
	fmt.Fprintf(stdout, "TX: %d deliveries, %d bytes; RX: %d deliveries, %d bytes; %d events\n",
		deliveries[0], dataBytes[0], deliveries[1], dataBytes[1], events)
	if end != nil {
		fmt.Fprintf(stdout, "ended: %s at %s, exit status %d\n", end.Reason, fmtTime(end.TimeNS), end.ExitStatus)
	} else {
		fmt.Fprintln(stdout, "ended: no END record (imported or cut short)")
	}
	keys := make([]wire.Tag, 0, len(tags))
	for t := range tags {
		keys = append(keys, t)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TAG\tFRAMES\tPAYLOAD BYTES\tACCEPTED\tREJECTED\t")
	for _, t := range keys {
		s := tags[t]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", t, s.frames, s.bytes, s.accepted, s.rejected)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "rejected by reason:")
	anyReason := false
	for _, r := range dispatch.Reasons() {
		if n := reasons[r]; n > 0 {
			fmt.Fprintf(stdout, "  %-15s %d\n", r, n)
			anyReason = true
		}
	}
	if !anyReason {
		fmt.Fprintln(stdout, "  none")
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
