package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/tracetool"
)

// traceTimeline implements `ktstr trace timeline TRACE -o OUT`: the
// trace's timeline (tracetool.BuildTimeline) written as OUT.json, Chrome
// trace-event JSON for ui.perfetto.dev and chrome://tracing, and
// OUT.html, one self-contained page. It streams the trace and holds a
// bounded timeline, so both files stay small whatever the trace holds.
func traceTimeline(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace timeline", "TRACE -o OUT", stderr)
	out := fs.String("o", "", "write OUT.json (trace-event JSON) and OUT.html (a self-contained page); a .json or .html suffix is dropped (required)")
	force := fs.Bool("force", false, "replace OUT.json and OUT.html if they exist")
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usagef("trace timeline: give exactly one trace; usage: ktstr trace timeline TRACE -o OUT")
	case *out == "":
		return usagef("trace timeline: -o OUT is required (it writes OUT.json and OUT.html)")
	case outfile.IsStdout(*out):
		return usagef("trace timeline: -o -: the timeline is two files; name a file base, e.g. -o run")
	}
	path := pos[0]
	// -o names a file base; an existing directory or device there is a
	// slip (a directory meant to hold the files), not a base.
	if fi, err := os.Stat(*out); err == nil && !fi.Mode().IsRegular() {
		return usagef("trace timeline: -o %s: it is %s; -o names a file base (it writes OUT.json and OUT.html), e.g. -o %s", safe(*out), outfile.Kind(fi.Mode()), safe(filepath.Join(*out, "timeline")))
	}
	base := strings.TrimSuffix(strings.TrimSuffix(*out, ".json"), ".html")
	targets := []string{base + ".json", base + ".html"}
	opt := outfile.Options{Force: *force, Inputs: []string{path}}
	for _, t := range targets {
		if err := outfile.Check(t, opt); err != nil {
			return usageErr(fmt.Errorf("trace timeline: %w", err))
		}
	}
	f, err := openTrace(path)
	if err != nil {
		return fmt.Errorf("trace timeline: %w", err)
	}
	tl, err := tracetool.BuildTimeline(f, path)
	f.Close()
	if err != nil {
		return usageErr(fmt.Errorf("trace timeline: %w", err))
	}
	if tl.Truncation != nil {
		warnTruncated(stderr, "trace timeline", path, tl.Truncation)
	}
	if err := writeAll(targets, opt, tl.WriteChromeJSON, tl.WriteHTML); err != nil {
		return usageErr(fmt.Errorf("trace timeline: %w", err))
	}
	sizes := make([]int64, len(targets))
	for i, t := range targets {
		if fi, err := os.Stat(t); err == nil {
			sizes[i] = fi.Size()
		}
	}
	fmt.Fprintf(stdout, "%s: %d frames in %d lanes (%d as density bands), %d markers, %.6fs\n",
		safe(path), tl.Frames(), len(tl.Lanes), tl.DenseLanes(), len(tl.Markers), float64(tl.EndNS)/1e9)
	fmt.Fprintf(stdout, "wrote %s (%d bytes: open it in ui.perfetto.dev or chrome://tracing) and %s (%d bytes: open it in a browser)\n",
		safe(targets[0]), sizes[0], safe(targets[1]), sizes[1])
	return nil
}

// writeAll writes targets[i] with writes[i] under the output rule
// (internal/outfile), each in full before any is put in place: a full
// disk leaves the old files (or none), never a new JSON beside an old
// page.
func writeAll(targets []string, opt outfile.Options, writes ...func(io.Writer) error) error {
	var files []*outfile.File
	defer func() {
		for _, f := range files {
			f.Abort()
		}
	}()
	for i, write := range writes {
		dst, err := outfile.Create(targets[i], opt)
		if err != nil {
			return err
		}
		files = append(files, dst)
		if err := write(dst); err != nil {
			return fmt.Errorf("writing %s: %w", targets[i], err)
		}
		if err := dst.Sync(); err != nil {
			return fmt.Errorf("writing %s: %w", targets[i], err)
		}
	}
	for _, f := range files {
		if err := f.Commit(); err != nil {
			return err
		}
	}
	return nil
}
