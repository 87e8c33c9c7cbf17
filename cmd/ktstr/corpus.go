package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/replay"
)

// runCorpus dispatches `ktstr corpus SUBCOMMAND`.
func runCorpus(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("corpus: missing subcommand (export or cover)")
	}
	switch args[0] {
	case "export":
		return runCorpusExport(args[1:], stdout, stderr)
	case "cover":
		return runCorpusCover(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintf(stderr, "usage: ktstr corpus export -o DIR TRACE...\n       ktstr corpus cover [--json] [--check] PATH...\n\n"+
			"  export  write each trace's TX stream as a Go fuzz corpus file for FuzzDispatch\n"+
			"  cover   which gate-table rows, reject reasons and budget edges traces and FuzzDispatch corpora exercise\n")
		return nil
	default:
		return usagef("corpus: unknown subcommand %q (want export or cover)", args[0])
	}
}

// runCorpusExport implements `ktstr corpus export TRACE... -o DIR`: each
// trace becomes one `go test fuzz v1` file in DIR, named by its content
// hash as go test names them, holding the FuzzDispatch input whose
// delivery table is the trace's deliveries and times. Every trace is
// read before anything is written, so bad input writes nothing. A
// truncated trace exports its readable prefix, and says so on stderr.
// The files are written under the output rule (internal/outfile): a file
// of the same name and content is left as it is.
func runCorpusExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("corpus export", "TRACE...", stderr)
	dir := fs.String("o", "", "directory to write the corpus files to, e.g. fuzz/testdata/fuzz/FuzzDispatch (required)")
	limit := new(byteSize)
	*limit = corpus.DefaultExportLimit
	fs.Var(limit, "max", "refuse traces whose TX stream exceeds this size (e.g. 4MiB, at most 512MiB)")
	force := fs.Bool("force", false, "replace a corpus file of the same name but other content")
	traces, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if *dir == "" {
		return usagef("corpus export: -o DIR is required (e.g. -o fuzz/testdata/fuzz/FuzzDispatch)")
	}
	if len(traces) == 0 {
		return usagef("corpus export: no trace given; name one or more .zst traces")
	}
	if err := checkHeld("corpus export", "--max", *limit); err != nil {
		return err
	}
	if err := outfile.CheckDir(*dir, "-o"); err != nil {
		return usageErr(fmt.Errorf("corpus export: %w; check that -o names a writable directory", err))
	}

	inputs := make([][]byte, len(traces))
	streams := make([]*replay.Stream, len(traces))
	for i, path := range traces {
		s, tr, err := exportStream(path, int64(*limit))
		if err != nil {
			return usageErr(err)
		}
		if tr != nil {
			warnTruncated(stderr, "corpus export", path, tr)
		}
		inputs[i], streams[i] = corpus.EncodeDispatchInput(s), s
	}
	_, statErr := os.Stat(*dir)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return usagef("corpus export: %w; check that -o names a writable directory", err)
	}
	for i, path := range traces {
		content := corpus.MarshalGoFuzzFile(inputs[i])
		out := filepath.Join(*dir, corpus.GoFuzzFileName(content))
		if err := writeCorpusFile(out, content, *force, traces); err != nil {
			if statErr != nil && i == 0 {
				os.Remove(*dir) // made for this export, and still empty
			}
			return usagef("corpus export: %w", err)
		}
		frames, rejected := sessionCounts(streams[i])
		fmt.Fprintf(stdout, "%s\t%s (%d deliveries, %d bytes, %d frames, %d rejected)\n", safe(out), safe(path), streams[i].Deliveries(), len(streams[i].Data), frames, rejected)
	}
	return nil
}

// writeCorpusFile writes one corpus file under the output rule.
func writeCorpusFile(path string, content []byte, force bool, inputs []string) error {
	f, err := outfile.Create(path, outfile.Options{Force: force, KeepIdentical: true, Inputs: inputs})
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(content); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// exportStream reads one trace's TX bulk-port stream, as every command
// reads a trace: typed input, the END outcome checked, a truncated trace
// read up to where it ends (the truncation is returned).
func exportStream(path string, limit int64) (*replay.Stream, *replay.Truncation, error) {
	f, err := openTrace(path)
	if err != nil {
		return nil, nil, fmt.Errorf("corpus export: %w", err)
	}
	defer f.Close()
	h, err := replay.Hold(f, limit)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("corpus export: %s: %w", path, err)
	case h.More:
		return nil, nil, fmt.Errorf("corpus export: %s: %w: the stream exceeds %d bytes or %d deliveries; export a shorter trace or raise --max", path, corpus.ErrTooLarge, limit, replay.MaxHeldDeliveries)
	}
	if err := checkEndOutcome(h.End); err != nil {
		return nil, nil, fmt.Errorf("corpus export: %s: %w: %w", path, replay.ErrBadTrace, err)
	}
	return h.Stream, h.Truncation, nil
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments (`TRACE... -o DIR`), which the flag package
// alone stops at, and returns the positional arguments. A lone "--"
// ends flag parsing.
func parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, help bool, err error) {
	for {
		if help, err := parseFlags(fs, args); help || err != nil {
			return nil, help, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, false, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), false, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// sessionCounts feeds an exported stream through a Session, as the fuzz
// target will, and counts its frames and the ones the gates reject: what
// the corpus entry exercises.
func sessionCounts(s *replay.Stream) (frames, rejected int) {
	sess := dispatch.NewSession()
	for i := range s.Deliveries() {
		sess.Feed(s.Times[i], s.Delivery(i), func(_ *dispatch.Message, r dispatch.Result) {
			frames++
			if !r.Accepted() {
				rejected++
			}
		})
	}
	sess.Finish()
	return frames, rejected
}
