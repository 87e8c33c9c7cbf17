package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/replay"
)

// runCorpus dispatches `ktstr corpus SUBCOMMAND`.
func runCorpus(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("corpus: missing subcommand (export)")
	}
	switch args[0] {
	case "export":
		return runCorpusExport(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintf(stderr, "usage: ktstr corpus export -o DIR TRACE...\n\n"+
			"  export  write each trace's TX stream as a Go fuzz corpus file for FuzzDispatch\n")
		return nil
	default:
		return usagef("corpus: unknown subcommand %q (want export)", args[0])
	}
}

// runCorpusExport implements `ktstr corpus export TRACE... -o DIR`: each
// trace becomes one `go test fuzz v1` file in DIR, named by its content
// hash as go test names them, holding the FuzzDispatch input whose
// delivery table is the trace's deliveries and times. Every trace is
// read before anything is written, so bad input writes nothing.
func runCorpusExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("corpus export", "TRACE...", stderr)
	dir := fs.String("o", "", "directory to write the corpus files to, e.g. fuzz/testdata/fuzz/FuzzDispatch (required)")
	limit := fs.Int64("max", corpus.DefaultExportLimit, "refuse traces whose TX stream exceeds this many bytes")
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
	if *limit <= 0 {
		return usagef("corpus export: -max must be positive, got %d", *limit)
	}

	inputs := make([][]byte, len(traces))
	streams := make([]*replay.Stream, len(traces))
	for i, path := range traces {
		inputs[i], streams[i], err = exportOne(path, *limit)
		if err != nil {
			return usageErr(err)
		}
	}
	for i, path := range traces {
		out, err := corpus.WriteGoFuzzFile(*dir, inputs[i])
		if err != nil {
			return usagef("corpus export: %w; check that -o names a writable directory", err)
		}
		fmt.Fprintf(stdout, "%s\t%s (%d deliveries, %d bytes)\n", out, path, streams[i].Deliveries(), len(streams[i].Data))
	}
	return nil
}

// exportOne reads one trace and returns its FuzzDispatch input.
func exportOne(path string, limit int64) ([]byte, *replay.Stream, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("corpus export: %w", err)
	}
	defer f.Close()
	in, s, err := corpus.ExportTrace(f, limit)
	switch {
	case errors.Is(err, corpus.ErrTooLarge):
		return nil, nil, fmt.Errorf("corpus export: %s: %w; export a shorter trace or raise -max", path, err)
	case err != nil:
		return nil, nil, fmt.Errorf("corpus export: %s: %w", path, err)
	}
	return in, s, nil
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
