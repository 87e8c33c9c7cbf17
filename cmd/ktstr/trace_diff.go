package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ktstr/ktstr/tracetool"
)

// traceDiff implements `ktstr trace diff A B`: the TX frame sequences
// (tag, payload digest, gate result) and the replayed outcomes of two
// traces compared (tracetool.Diff). Exit 0 when they are equal, 1 when
// not.
func traceDiff(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace diff", "A.zst B.zst", stderr)
	asJSON := fs.Bool("json", false, "print the comparison as one JSON object")
	ctx := fs.Int("context", tracetool.DefaultDiffContext, "frames shown before and after the first divergence")
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	switch {
	case len(pos) != 2:
		return usagef("trace diff: give exactly two traces; usage: ktstr trace diff A.zst B.zst")
	case *ctx < 1 || *ctx > 1000:
		return usagef("trace diff: --context %d: want 1 to 1000", *ctx)
	}
	fa, err := openTrace(pos[0])
	if err != nil {
		return fmt.Errorf("trace diff: %w", err)
	}
	defer fa.Close()
	fb, err := openTrace(pos[1])
	if err != nil {
		return fmt.Errorf("trace diff: %w", err)
	}
	defer fb.Close()
	res, err := tracetool.Diff(fa, fb, pos[0], pos[1], *ctx)
	if err != nil {
		return usageErr(fmt.Errorf("trace diff: %w", err))
	}
	for _, s := range []tracetool.DiffSide{res.A, res.B} {
		if s.Truncated != nil {
			warnTruncated(stderr, "trace diff", s.Trace, s.Truncated)
		}
	}
	if *asJSON {
		js, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("trace diff: encoding the report: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", printableJSON(js))
	} else {
		writeDiff(stdout, res)
	}
	if !res.Equal {
		return checkFailed()
	}
	return nil
}

// writeDiff prints the human-readable form of a comparison. Tags are
// printed as wire.Tag.String gives them (printable ASCII or hex); every
// other string from a trace goes through safe.
func writeDiff(stdout io.Writer, r *tracetool.DiffResult) {
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for _, s := range []struct {
		name string
		side tracetool.DiffSide
	}{{"A", r.A}, {"B", r.B}} {
		end := "no END record"
		if s.side.End != "" {
			end = "ended " + safe(s.side.End)
		}
		if s.side.Truncated != nil {
			end = fmt.Sprintf("truncated at byte %d", s.side.Truncated.At)
		}
		fmt.Fprintf(w, "%s: %s: %d TX frames, %d bytes in %d deliveries, %s\n", s.name, safe(s.side.Trace), s.side.Frames, s.side.Bytes, s.side.Deliveries, end)
	}
	fmt.Fprintln(w, r.Summary())
	if d := r.Divergence; d != nil {
		row := func(mark, side string, f tracetool.DiffFrame) {
			fmt.Fprintf(w, "  %1s #%-8d %s  %-28s  %s\n", mark, f.Index, side, f.Where(), f.Describe())
		}
		for _, p := range d.Before {
			row("", "A", p.A)
			row("", "B", p.B)
		}
		if d.A != nil {
			row(">", "A", *d.A)
		} else {
			fmt.Fprintf(w, "  > #%-8d A  (no frame: A ends here)\n", d.Index)
		}
		if d.B != nil {
			row(">", "B", *d.B)
		} else {
			fmt.Fprintf(w, "  > #%-8d B  (no frame: B ends here)\n", d.Index)
		}
		for _, f := range d.AfterA {
			row("", "A", f)
		}
		for _, f := range d.AfterB {
			row("", "B", f)
		}
	}
	if len(r.Outcome) > 0 {
		fmt.Fprintln(w, "outcome fields that differ:")
		for _, f := range r.Outcome {
			fmt.Fprintf(w, "  %s:\n    A %s\n    B %s\n", f.Field, safe(f.A), safe(f.B))
		}
	}
}
