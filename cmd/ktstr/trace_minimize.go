package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/replay"
	"github.com/ktstr/ktstr/tracetool"
)

// minimizeReport is the --json form of `ktstr trace minimize`.
type minimizeReport struct {
	Trace     string                    `json:"trace"`
	Until     string                    `json:"until"`
	Output    string                    `json:"output"`
	Result    *tracetool.MinimizeResult `json:"result"`
	Truncated *replay.Truncation        `json:"truncated"`
}

// traceMinimize implements `ktstr trace minimize TRACE --until PROPERTY
// -o MIN.zst`: delta debugging over the trace's deliveries, frames and
// bytes down to a trace that still shows PROPERTY (tracetool.Minimize).
// Exit 1 when TRACE does not show PROPERTY.
func traceMinimize(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace minimize", "TRACE --until PROPERTY -o MIN.zst", stderr)
	until := fs.String("until", "", "what the minimized trace must still show: violation[=N], mismatch, killed, sys_rdy, reject=REASON, tag=TAG; comma-separated, all must hold (required)")
	out := fs.String("o", "", "minimized trace to write (required)")
	force := fs.Bool("force", false, "replace the -o file if it exists")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	maxTries := fs.Int("max-tries", tracetool.DefaultMaxTries, "stop after this many replays and write the smallest trace found so far")
	limit := byteSize(tracetool.DefaultLoadLimit)
	fs.Var(&limit, "max", "refuse traces with more TX bytes than this, at most 512MiB (the stream is held in memory, at several times its size)")
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usagef("trace minimize: give exactly one trace; usage: ktstr trace minimize TRACE --until PROPERTY -o MIN.zst")
	case *until == "":
		return usagef("trace minimize: --until PROPERTY is required (e.g. --until reject=crc or --until killed,tag=STIM)")
	case *out == "":
		return usagef("trace minimize: -o MIN.zst is required")
	case *maxTries <= 0:
		return usagef("trace minimize: --max-tries must be positive, got %d", *maxTries)
	}
	if err := checkHeld("trace minimize", "--max", limit); err != nil {
		return err
	}
	path := pos[0]
	prop, err := tracetool.ParseProperty(*until)
	if err != nil {
		return usagef("trace minimize: --until: %w", err)
	}
	opt := outfile.Options{Force: *force, Inputs: []string{path}}
	if err := outfile.Check(*out, opt); err != nil {
		return usageErr(fmt.Errorf("trace minimize: %w", err))
	}

	f, err := openTrace(path)
	if err != nil {
		return fmt.Errorf("trace minimize: %w", err)
	}
	l, err := tracetool.Load(f, path, int64(limit))
	f.Close()
	switch {
	case errors.Is(err, replay.ErrTooLong):
		return usagef("trace minimize: %w; minimize a shorter trace, or raise --max", err)
	case err != nil:
		return usageErr(fmt.Errorf("trace minimize: %w", err))
	}
	if l.Truncation != nil {
		warnTruncated(stderr, "trace minimize", path, l.Truncation)
	}
	c := tracetool.NewChecker(prop, l.Recorded)
	if ok, why := c.Baseline(l.Stream); !ok {
		return &exitError{ExitCheck, fmt.Errorf("trace minimize: %s does not show %s: %s; nothing was written", safe(path), prop, why)}
	}
	res := tracetool.Minimize(l.Stream, c, tracetool.MinimizeOptions{MaxTries: *maxTries})

	// The END record stays (why and when the run ended); its outcome only
	// where the property compares with it.
	var end *capture.End
	keepOutcome := prop.NeedsRecorded()
	if l.End != nil {
		e := *l.End
		if !keepOutcome {
			e.Outcome = nil
		}
		end = &e
	}
	meta := tracetool.MinimizedMeta(l.Meta, path, prop, res, keepOutcome && l.End != nil)
	dst, err := outfile.Create(*out, opt)
	if err != nil {
		return usageErr(fmt.Errorf("trace minimize: %w", err))
	}
	defer dst.Abort()
	if err := tracetool.WriteTrace(dst, res.Stream, meta, end); err != nil {
		return usageErr(fmt.Errorf("trace minimize: writing %s: %w", *out, err))
	}
	if err := dst.Commit(); err != nil {
		return usageErr(fmt.Errorf("trace minimize: %w", err))
	}
	if err := verifyMinimized(*out, prop); err != nil {
		return fmt.Errorf("trace minimize: %w", err)
	}

	if *asJSON {
		js, err := json.Marshal(minimizeReport{Trace: path, Until: prop.String(), Output: *out, Result: res, Truncated: l.Truncation})
		if err != nil {
			return fmt.Errorf("trace minimize: encoding the report: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", printableJSON(js))
		return nil
	}
	writeMinimizeReport(stdout, path, *out, prop, res)
	return nil
}

// verifyMinimized reads the written trace back, as `ktstr replay` would,
// and checks that it shows the property.
func verifyMinimized(path string, prop tracetool.Property) error {
	f, err := openTrace(path)
	if err != nil {
		return err
	}
	defer f.Close()
	l, err := tracetool.Load(f, path, 1<<62)
	if err != nil {
		return err
	}
	if ok, why := tracetool.NewChecker(prop, l.Recorded).Baseline(l.Stream); !ok {
		return fmt.Errorf("the written %s does not replay with %s (%s); this is a bug, please report it with the input trace", safe(path), prop, why)
	}
	return nil
}

func writeMinimizeReport(w io.Writer, path, out string, prop tracetool.Property, r *tracetool.MinimizeResult) {
	minimal := "1-minimal: removing any one more delivery, frame or byte loses it"
	switch {
	case !r.Minimal:
		minimal = "NOT minimal: stopped at --max-tries"
	case r.BytesSkipped:
		minimal = fmt.Sprintf("1-minimal in deliveries and frames; over %d bytes, so single bytes were not tried", tracetool.DefaultMaxByteUnits)
	}
	fmt.Fprintf(w, "%s until %s\n", safe(path), prop)
	fmt.Fprintf(w, "  before: %s\n", r.Before)
	fmt.Fprintf(w, "  after:  %s (%s)\n", r.After, minimal)
	fmt.Fprintf(w, "  tries:  %d replays (%d candidates met again), %s\n", r.Tries, r.CacheHits, r.Elapsed.Round(time.Microsecond))
	var phases []string
	for _, p := range r.Phases {
		if p.Tries == 0 && p.Note == "" {
			continue // nothing left to try in that phase
		}
		if p.Note != "" {
			phases = append(phases, fmt.Sprintf("%d:%s %s", p.Round, p.Phase, p.Note))
			continue
		}
		phases = append(phases, fmt.Sprintf("%d:%s %d→%d (%d tries)", p.Round, p.Phase, p.Units, p.Kept, p.Tries))
	}
	fmt.Fprintf(w, "  phases: %s\n", strings.Join(phases, ", "))
	fmt.Fprintf(w, "wrote %s (replay it with: ktstr replay %s)\n", safe(out), safe(out))
}
