package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/replay"
)

// mutateLimit bounds the TX stream a mutation campaign holds in memory:
// each mutant is a copy, checked against the model frame by frame. A
// longer trace is mutated over its first mutateLimit bytes, and the
// report says so. (The recorded traces of corpus/real are 2–60 KB.)
const mutateLimit = 1 << 20

func runReplay(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", "TRACE...", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per trace (JSON Lines, docs/protocol.md)")
	chunking := fs.String("chunking", "recorded", "how to split the bytes into feeds: recorded, whole, bytes or random:SEED")
	mutate := fs.Int("mutate", 0, "also run a mutation campaign of N torn/forged mutants per trace")
	seed := fs.Uint64("seed", 1, "seed of the mutation campaign")
	saveDir := fs.String("save-failures", "", "write each mutant that breaks an invariant as a trace into `DIR`")
	force := fs.Bool("force", false, "replace a file of the same name but other content in the --save-failures DIR")
	modelLimit := byteSize(replay.DefaultModelLimit)
	fs.Var(&modelLimit, "model-limit", "hold streams up to this many bytes (e.g. 4MiB, at most 512MiB) in memory for the model and split checks, which take several times that; a longer one replays with invariants 6 and 10 unchecked, and the report says so")
	traces, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if len(traces) == 0 {
		return usagef("replay: no trace given; usage: ktstr replay [flags] TRACE...")
	}
	if *chunking == "" {
		return usagef("replay: --chunking \"\": use recorded, whole, bytes or random:SEED")
	}
	c, err := replay.ParseChunking(*chunking)
	if err != nil {
		return usageErr(fmt.Errorf("replay: --chunking: %w", err))
	}
	if *mutate < 0 {
		return usagef("replay: --mutate must be ≥ 0, got %d", *mutate)
	}
	if err := checkHeld("replay", "--model-limit", modelLimit); err != nil {
		return err
	}
	saveSet := false
	fs.Visit(func(f *flag.Flag) { saveSet = saveSet || f.Name == "save-failures" })
	if saveSet && *saveDir == "" {
		return usagef("replay: --save-failures \"\": name the directory for the failing mutants")
	}
	if *saveDir != "" && *mutate == 0 {
		return usagef("replay: --save-failures needs --mutate N")
	}
	if *force && *saveDir == "" {
		return usagef("replay: --force applies to --save-failures DIR only")
	}
	// Every output is checked before the first trace is replayed, so a
	// campaign's result is never lost to an output found bad after it.
	if *saveDir != "" {
		if err := outfile.CheckDir(*saveDir, "--save-failures"); err != nil {
			return usageErr(fmt.Errorf("replay: %w", err))
		}
	}
	if *mutate > 0 {
		// A campaign reads its trace a second time: a pipe has gone by then.
		for _, path := range traces {
			if fi, err := statInput(path, "trace", true); err == nil && !fi.Mode().IsRegular() {
				return usagef("replay: --mutate reads each trace twice, and %s is a pipe; save it to a file first", path)
			}
		}
	}

	var badInput error
	var signalled os.Signal // what interrupted a campaign, if one did
	failed := false
	for _, path := range traces {
		if signalled != nil {
			break // the interrupted campaign's trace was the last
		}
		if writeFailed(stdout) != nil {
			break // run reports it
		}
		// The campaign runs first, so that what it held is gone before
		// the replay holds its report: the two never add up (invariant
		// 7). The replay's word on a bad trace is the one reported.
		var m *replay.Mutation
		var table string
		var merr error
		if *mutate > 0 {
			m, table, merr = mutateOne(path, *mutate, *seed, *saveDir, *force, stderr, &signalled)
		}
		rep, err := replayOne(path, c, int64(modelLimit))
		if err == nil && rep.Truncation != nil {
			warnTruncated(stderr, "replay", path, rep.Truncation)
		}
		if err == nil {
			rep.Mutation, err = m, merr
		}
		if err != nil {
			if badInput == nil {
				badInput = err
			}
			fmt.Fprintf(stderr, "ktstr: %s\n", errorLine(err.Error()))
			continue
		}
		if *asJSON {
			// Encoded straight to the output: one copy of a report
			// that may list 65536 verdicts twice, not three.
			if err := json.NewEncoder(printableWriter{stdout}).Encode(rep); err != nil {
				if writeFailed(stdout) != nil {
					break // run reports it
				}
				return fmt.Errorf("replay: encoding the report: %w", err)
			}
		} else {
			writeReport(stdout, rep, c)
			io.WriteString(stdout, table)
		}
		failed = failed || !rep.OK() || rep.Mutation != nil && rep.Mutation.Failing > 0
	}
	switch {
	case signalled != nil:
		code := ExitInterrupted
		if signalled == syscall.SIGTERM {
			code = ExitTerminated
		}
		return &exitError{code, fmt.Errorf("replay: interrupted (%v): the mutation campaign stopped early; its results up to then are above", signalled)}
	case badInput != nil:
		return usageErr(errors.Join(errSilent, badInput))
	case failed:
		return checkFailed()
	}
	return nil
}

// warnTruncated says on stderr, in the one form every command uses, that
// a trace ends early and that what it printed or wrote is its readable
// prefix (docs/protocol.md §8).
func warnTruncated(stderr io.Writer, cmd, path string, t *replay.Truncation) {
	fmt.Fprintf(stderr, "ktstr: %s: %s: truncated at byte %d: %s\n", cmd, safe(path), t.At, strings.TrimPrefix(t.Reason, "truncated trace: "))
}

func replayOne(path string, c replay.Chunking, modelLimit int64) (*replay.Report, error) {
	f, err := openTrace(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	rep, err := replay.Trace(f, path, replay.Options{Chunking: c, ModelLimit: modelLimit})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if rep.End != nil {
		rep.End.Outcome = nil // decoded into rep.Recorded; up to 16 MiB not to hold while printing
	}
	return rep, nil
}

// writeReport prints the human-readable form of a replay report.
func writeReport(w io.Writer, rep *replay.Report, c replay.Chunking) {
	// Every string from the trace is shown through safe: none can start
	// a line of its own or reach the terminal as a control sequence.
	m := rep.Meta
	src := ""
	if m.Backend != "" {
		src = safe(m.Backend)
	}
	if m.Accel != "" {
		src += "/" + safe(m.Accel)
	}
	if m.Scenario != "" {
		src += ", scenario " + safe(m.Scenario)
	}
	if m.KernelRelease != "" {
		src += ", kernel " + safe(m.KernelRelease)
	}
	fmt.Fprintf(w, "%s: %d frames, %d bytes in %d deliveries (%s), chunking %s\n",
		safe(rep.Trace), rep.Frames, rep.Bytes, rep.Deliveries, strings.TrimPrefix(src, ", "), c)
	fmt.Fprintf(w, "  outcome:    %s\n", summarize(&rep.Outcome))
	fmt.Fprintf(w, "  rejected:   %s\n", rejectedSummary(&rep.Outcome.Rejected))
	if rep.End != nil {
		fmt.Fprintf(w, "  run ended:  %s after %.3fs (exit status %d)\n", safe(rep.End.Reason), float64(rep.End.TimeNS)/1e9, rep.End.ExitStatus)
	}
	switch {
	case rep.Recorded == nil:
		fmt.Fprintf(w, "  recorded:   none in this trace (nothing to compare)\n")
	case rep.Match:
		fmt.Fprintf(w, "  recorded:   replay matches the live outcome\n")
	default:
		fmt.Fprintf(w, "  recorded:   MISMATCH with the live outcome:\n")
		for _, d := range rep.Diff {
			// The recorded side of a difference is the trace's text.
			fmt.Fprintf(w, "              %s\n", safeInline(d))
		}
	}
	if t := rep.Truncation; t != nil {
		fmt.Fprintf(w, "  truncated:  at byte %d: %s (replayed what was there)\n", t.At, safe(t.Reason))
	}
	checked := "1–5, 7–9 (stream over --model-limit: model and split checks skipped)"
	if rep.ModelChecked {
		checked = "1–10"
	}
	if len(rep.Violations) == 0 {
		fmt.Fprintf(w, "  invariants: %s hold\n", checked)
		return
	}
	fmt.Fprintf(w, "  invariants: %d VIOLATED:\n", len(rep.Violations))
	for _, v := range rep.Violations {
		fmt.Fprintf(w, "              %s\n", safeInline(v))
	}
}

func summarize(o *dispatch.Outcome) string {
	var parts []string
	if o.SysRdy {
		parts = append(parts, "sys_rdy")
	}
	if o.Killed {
		parts = append(parts, fmt.Sprintf("killed (%d SCDX)", o.KillSignals))
	}
	parts = append(parts, fmt.Sprintf("%d verdicts", len(o.Verdicts)))
	if o.VerdictsDropped > 0 {
		parts = append(parts, fmt.Sprintf("%d more past the budget of %d (dropped digest %.12s…)", o.VerdictsDropped, dispatch.MaxVerdicts, o.VerdictsDroppedSHA256))
	}
	if n := len(o.SnapshotRequests); n > 0 {
		parts = append(parts, fmt.Sprintf("%d snapshot requests", n))
	}
	if n := len(o.KernelOps); n > 0 {
		parts = append(parts, fmt.Sprintf("%d kernel ops", n))
	}
	if o.KASLR != nil {
		parts = append(parts, fmt.Sprintf("kaslr text=%#x", o.KASLR.TextAddr))
	}
	if o.Step != 0 {
		parts = append(parts, fmt.Sprintf("step %d", o.Step))
	}
	if o.WatchdogPauses > 0 {
		parts = append(parts, fmt.Sprintf("%d watchdog pauses (%.3fs)", o.WatchdogPauses, float64(o.WatchdogPauseNS)/1e9))
	}
	return strings.Join(parts, ", ")
}

func rejectedSummary(r *dispatch.Rejected) string {
	var parts []string
	for _, reason := range dispatch.Reasons() {
		if n := r.Count(reason); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", reason, n))
		}
	}
	if r.Oversize > 0 {
		parts = append(parts, fmt.Sprintf("oversize %d", r.Oversize))
	}
	if r.ResyncBytes > 0 {
		parts = append(parts, fmt.Sprintf("resync_bytes %d", r.ResyncBytes))
	}
	if r.TruncatedTailBytes > 0 {
		parts = append(parts, fmt.Sprintf("truncated_tail_bytes %d", r.TruncatedTailBytes))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// writeCampaign prints the human-readable form of a mutation campaign.
func writeCampaign(w io.Writer, path string, m *replay.Mutation, c *replay.Campaign) {
	stopped := ""
	if m.Interrupted {
		stopped = " (interrupted: the mutants made up to then)"
	}
	fmt.Fprintf(w, "%s: mutation campaign, %d mutants, seed %d%s\n", safe(path), m.Mutants, m.Seed, stopped)
	if m.Limited {
		fmt.Fprintf(w, "  (of its first %d TX bytes: the stream is longer than the campaign's %d-byte limit)\n", m.Bytes, mutateLimit)
	}
	c.WriteTable(w)
	for _, s := range m.Saved {
		fmt.Fprintf(w, "saved %s (replay it with: ktstr replay %s)\n", safe(s), safe(s))
	}
}

// mutateOne runs a campaign of n mutants over the trace's TX stream and
// saves the failing ones into saveDir, if given. It returns the
// campaign's "mutation" member and its human-readable form, and holds
// nothing of it once it returns.
func mutateOne(path string, n int, seed uint64, saveDir string, force bool, stderr io.Writer, signalled *os.Signal) (*replay.Mutation, string, error) {
	m, c, err := campaign(path, n, seed, saveDir, force, stderr, signalled)
	if err != nil {
		return nil, "", err
	}
	var table strings.Builder
	writeCampaign(&table, path, m, c)
	return m, table.String(), nil
}

func campaign(path string, n int, seed uint64, saveDir string, force bool, stderr io.Writer, signalled *os.Signal) (*replay.Mutation, *replay.Campaign, error) {
	f, err := openTrace(path)
	if err != nil {
		return nil, nil, fmt.Errorf("replay --mutate: %w", err)
	}
	defer f.Close()
	h, err := replay.Hold(f, mutateLimit)
	if err != nil {
		return nil, nil, fmt.Errorf("replay --mutate: %s: %w", path, err)
	}
	f.Close()
	s, meta, more := h.Stream, h.Meta, h.More
	if more {
		fmt.Fprintf(stderr, "ktstr: replay --mutate: %s: its TX stream is longer than %d bytes or %d deliveries; mutating its first %d bytes (%d deliveries)\n",
			safe(path), mutateLimit, replay.MaxHeldDeliveries, len(s.Data), s.Deliveries())
	}
	// A campaign may run for hours: SIGINT or SIGTERM ends it with what
	// it found, reported as usual and marked. Only while it runs: a
	// second signal, or one outside, acts as it always does.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got os.Signal
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case got = <-sigs:
			signal.Stop(sigs)
			cancel()
		case <-ctx.Done():
		}
	}()
	c := replay.MutateContext(ctx, s, n, seed)
	signal.Stop(sigs)
	cancel()
	<-done
	mutants, failing := c.Total()
	m := &replay.Mutation{Mutants: mutants, Failing: failing, Seed: seed, Bytes: len(s.Data), Limited: more,
		Operators: []replay.MutationOperator{}, Saved: []string{}, Interrupted: c.Interrupted}
	if c.Interrupted {
		*signalled = got
	}
	for _, o := range c.Operators {
		m.Operators = append(m.Operators, replay.MutationOperator(o))
	}
	if saveDir != "" && failing > 0 {
		if err := os.MkdirAll(saveDir, 0o755); err != nil {
			return nil, nil, usageErr(fmt.Errorf("replay --save-failures: %w", err))
		}
		base := strings.TrimSuffix(filepath.Base(path), ".zst")
		for _, fl := range c.Failures {
			name := filepath.Join(saveDir, fmt.Sprintf("%s-mutant-%d-%s.zst", base, fl.Index, fl.Operator))
			meta.Extra = map[string]string{"mutant_of": path, "operator": fl.Operator, "seed": fmt.Sprint(seed)}
			meta.Backend = "mutant"
			if err := saveMutant(name, fl.Stream, meta, outfile.Options{Force: force, KeepIdentical: true, Inputs: []string{path}, Flag: "--save-failures"}); err != nil {
				return nil, nil, usageErr(fmt.Errorf("replay --save-failures: %w", err))
			}
			m.Saved = append(m.Saved, name)
		}
	}
	return m, c, nil
}

// saveMutant writes s as a trace named name, under the output rule
// (internal/outfile).
func saveMutant(name string, s *replay.Stream, meta capture.Meta, opt outfile.Options) error {
	f, err := outfile.Create(name, opt)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := replay.WriteStream(f, s, meta); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return f.Commit()
}
