package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/replay"
	"github.com/ktstr/ktstr/soak"
)

// runSoak implements `ktstr soak [flags] -- RECORD-FLAGS...` and
// `ktstr soak merge SUMMARY...`.
func runSoak(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "merge" {
		return runSoakMerge(args[1:], stdout, stderr)
	}
	fs := newFlagSet("soak", "-- RECORD-FLAGS... (or: soak merge SUMMARY.json...)", stderr)
	runs := fs.Int("runs", 10, fmt.Sprintf("runs of the configuration, over all shards (at most %d)", soak.MaxRuns))
	jobs := fs.Int("j", 1, "runs at once (each a VM; give the VMs --cpus so they fit the host)")
	shardFlag := fs.String("shard", "0/1", "this job's share of the runs: I/N (0 ≤ I < N), or auto/N to take I from JOB_COMPLETION_INDEX (Kubernetes Indexed Job)")
	keep := fs.String("keep", "soak-out", "directory for the traces (and console logs) of runs that did not end as expected")
	expect := fs.String("expect", "poweroff,sched_exit", "END reasons that count as expected, comma-separated")
	asJSON := fs.Bool("json", false, "print one JSON object per run and a final summary object (JSON Lines)")
	summaryPath := fs.String("summary", "", "also write the summary as JSON to FILE (for soak merge)")
	rest, recordArgs := args, []string(nil)
	for i, a := range args {
		if a == "--" {
			rest, recordArgs = args[:i], args[i+1:]
			break
		}
	}
	if help, err := parseFlags(fs, rest); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("soak: unexpected argument %q; record's flags go after --", fs.Arg(0))
	}
	switch {
	case *runs < 1 || *runs > soak.MaxRuns:
		return usagef("soak: --runs must be from 1 to %d, got %d", soak.MaxRuns, *runs)
	case *jobs < 1:
		return usagef("soak: -j must be at least 1, got %d", *jobs)
	}
	shard, err := soak.ParseShard(*shardFlag, os.Getenv)
	if err != nil {
		return usagef("soak: --%w", err)
	}
	if shard.Count > *runs {
		return usagef("soak: --shard %s: %d shards of %d runs leave shards with nothing to do; use at most %d shards", shard, shard.Count, *runs, *runs)
	}
	// Every run's configuration is checked once before any boots: bad
	// record flags are one error, not N failed runs.
	if err := checkRecordArgs(recordArgs); err != nil {
		return err
	}
	if err := os.MkdirAll(*keep, 0o755); err != nil {
		return usagef("soak: --keep %s: %w", *keep, err)
	}
	// An earlier soak's kept traces are what it found: never replaced.
	if err := checkKeepDir(*keep, shard, *runs); err != nil {
		return err
	}
	if *summaryPath != "" {
		if err := checkSummaryTarget(*summaryPath); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return envErr(fmt.Errorf("soak: cannot find the ktstr executable to run record: %w", err))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// JSON Lines whose strings (paths, reasons) hold no unprintable rune.
	enc := printableEncoder{stdout}
	cfg := soak.Config{
		Runs: *runs, Jobs: *jobs, Shard: shard, Dir: *keep,
		Expect: soak.Expect{Reasons: strings.Split(*expect, ",")},
		Record: recordArgs,
		Run:    recordRunner(self, recordArgs),
		Each: func(r soak.Result) {
			if *asJSON {
				_ = enc.Encode(r)
			}
			if !r.Expected {
				where := "no trace was written"
				if r.Kept {
					where = "kept " + safe(r.Trace)
				}
				fmt.Fprintf(stderr, "\rsoak: run %d: %s (%s)\n", r.Index, safe(r.Why), where)
			}
		},
		Progress: func(done, running, kept, total int, elapsed time.Duration) {
			rate := 0.0
			if elapsed > 0 {
				rate = float64(done) / elapsed.Minutes()
			}
			fmt.Fprintf(stderr, "\rsoak %s: %d/%d runs done, %d running, %d kept, %.1f runs/min ", shard, done, total, running, kept, rate)
		},
	}
	sum, err := soak.Soak(ctx, cfg)
	fmt.Fprintln(stderr)
	if *summaryPath != "" {
		if werr := writeSummary(*summaryPath, sum); werr != nil {
			return usagef("soak: %w", werr)
		}
	}
	if *asJSON {
		_ = enc.Encode(map[string]any{"summary": sum})
	} else {
		writeSoakTable(stdout, sum)
	}
	if err != nil {
		return &exitError{ExitInterrupted, err}
	}
	if sum.Failed > 0 {
		return checkFailed()
	}
	return nil
}

// summaryOpt is how soak writes --summary: a summary is a soak's own
// output, replaced by the next soak that names it (checkSummaryTarget
// makes sure it is one).
func summaryOpt() outfile.Options { return outfile.Options{Force: true, Flag: "--summary"} }

// checkSummaryTarget lets --summary replace an existing file only when
// that file is a soak summary: anything else (a trace, an earlier
// soak's kept run) is not soak's to overwrite.
func checkSummaryTarget(path string) error {
	if err := outfile.Check(path, summaryOpt()); err != nil {
		return usagef("soak: %w", err)
	}
	if _, err := os.Lstat(path); err != nil {
		return nil // a new file
	}
	var old soak.Summary
	b, err := readSummary(path)
	if err != nil || json.Unmarshal(b, &old) != nil || old.Shard == "" {
		return usagef("soak: --summary %s exists and is not a soak summary; choose another name, or remove it", safe(path))
	}
	return nil
}

// printableEncoder writes JSON Lines through printableJSON.
type printableEncoder struct{ w io.Writer }

// Encode writes v as one JSON line.
func (e printableEncoder) Encode(v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.w, "%s\n", printableJSON(js))
	return err
}

// writeSummary writes the summary as indented JSON under the output rule.
func writeSummary(path string, sum soak.Summary) error {
	f, err := outfile.Create(path, summaryOpt())
	if err != nil {
		return err
	}
	defer f.Abort()
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		return fmt.Errorf("--summary %s: %w", path, err)
	}
	return f.Commit()
}

// checkRecordArgs runs `ktstr record --help`'s parser over the record
// flags (without recording), so a typo is exit 2 before any run.
func checkRecordArgs(args []string) error {
	fs := newFlagSet("record", "", io.Discard)
	var o recordOptions
	o.declare(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return usagef("soak: the record flags after --: %w", err)
	}
	if fs.NArg() > 0 {
		return usagef("soak: the record flags after --: unexpected argument %q", fs.Arg(0))
	}
	var own []string
	var missing error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "o", "console", "force", "cpuprofile":
			own = append(own, "-"+f.Name)
		case "kernel", "agent", "scheduler", "modules":
			// A missing file fails every run alike: said once, now.
			if _, err := os.Stat(f.Value.String()); err != nil && missing == nil {
				missing = usagef("soak: the record flags after --: --%s %s: %w", f.Name, safe(f.Value.String()), unwrapPathErr(err))
			}
		}
	})
	if missing != nil {
		return missing
	}
	if len(own) > 0 {
		return usagef("soak: the record flags after --: %s: soak names each run's outputs itself (every run would write the same file); drop it", strings.Join(own, ", "))
	}
	return nil
}

// checkKeepDir refuses a --keep directory that already holds a trace or
// console log under a name one of this shard's runs would write: an
// earlier soak's kept runs are what it found, and are never replaced.
func checkKeepDir(dir string, shard soak.Shard, total int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return usagef("soak: --keep %s: %w", dir, err)
	}
	for _, e := range ents {
		digits, _, _ := strings.Cut(strings.TrimPrefix(e.Name(), "run-"), ".")
		i, err := strconv.Atoi(digits)
		if err != nil || i < 0 || i >= total || i%shard.Count != shard.Index {
			continue
		}
		// The names the run would write, as the runner makes them.
		if run := soak.RunPath(dir, i); e.Name() == filepath.Base(run) || e.Name() == filepath.Base(consolePath(run)) {
			return usagef("soak: --keep %s already holds %s, from an earlier soak; move its runs away or choose another --keep", dir, safe(e.Name()))
		}
	}
	return nil
}

// consolePath is where a run's console log goes beside its trace.
func consolePath(trace string) string { return strings.TrimSuffix(trace, ".zst") + ".console" }

// recordRunner runs `ktstr record ARGS -o PATH` as a child process and
// replays the trace it wrote.
func recordRunner(self string, args []string) soak.Runner {
	return func(ctx context.Context, i int, path string) soak.Result {
		console := consolePath(path)
		cmd := exec.CommandContext(ctx, self, append(append([]string{"record"}, args...), "-q", "-o", path, "--console", console)...)
		out, err := cmd.CombinedOutput()
		var r soak.Result
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			r.ExitStatus = ee.ExitCode()
		case err != nil:
			r.ExitStatus = -1
			r.Why = err.Error()
		}
		f, ferr := os.Open(path)
		if ferr != nil {
			r.Reason = ""
			r.Violations = []string{"no trace: " + lastLine(string(out))}
			return r
		}
		defer f.Close()
		rep, rerr := replay.Trace(f, path, replay.Options{})
		if rerr != nil {
			r.Violations = []string{rerr.Error()}
			return r
		}
		if rep.End != nil {
			r.Reason = rep.End.Reason
		}
		r.Match, r.Violations = rep.Match, rep.Violations
		if t := rep.Truncation; t != nil {
			r.Violations = append(r.Violations, fmt.Sprintf("trace truncated at byte %d: %s", t.At, t.Reason))
		}
		if r.ExitStatus == 0 {
			_ = os.Remove(console)
		}
		return r
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// writeSoakTable prints the run-end reasons with counts and the kept
// traces.
func writeSoakTable(w io.Writer, s soak.Summary) {
	reasons := make([]string, 0, len(s.Reasons))
	for k := range s.Reasons {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := ""
	if s.Seconds > 0 {
		rate = fmt.Sprintf(" (%.1f runs/min)", float64(s.Runs)/(s.Seconds/60))
	}
	fmt.Fprintf(tw, "soak %s: %d runs in %.0f s%s, %d not as expected\n", safe(s.Shard), s.Runs, s.Seconds, rate, s.Failed)
	fmt.Fprintln(tw, "END REASON\tRUNS")
	// A merged summary's strings come from files: each goes through safe.
	for _, k := range reasons {
		fmt.Fprintf(tw, "%s\t%d\n", safe(k), s.Reasons[k])
	}
	tw.Flush()
	for _, k := range s.Kept {
		fmt.Fprintf(w, "kept %s (ktstr replay %s)\n", safe(k), safe(k))
	}
}

// maxSummaries bounds the summaries soak merge holds at once.
const maxSummaries = 64 << 20

// maxSummary bounds a soak summary read back: its kept list is bounded
// by the runs, and a file past this is not one soak wrote.
const maxSummary = 16 << 20

// readSummary reads a --summary file: a regular file (or pipe) of at
// most maxSummary bytes.
func readSummary(path string) ([]byte, error) {
	f, err := openInput(path, "summary", true)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSummary+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxSummary {
		return nil, fmt.Errorf("%s is over %d bytes: not a soak summary", path, maxSummary)
	}
	return b, nil
}

// runSoakMerge implements `ktstr soak merge SUMMARY...`.
func runSoakMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("soak merge", "SUMMARY.json...", stderr)
	asJSON := fs.Bool("json", false, "print the merged summary as JSON")
	paths, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if len(paths) == 0 {
		return usagef("soak merge: give the shards' --summary files")
	}
	var parts []soak.Summary
	read := 0
	for _, p := range paths {
		b, err := readSummary(p)
		if err != nil {
			return usagef("soak merge: %w", err)
		}
		// The summaries are held together: bounded together too.
		if read += len(b); read > maxSummaries {
			return usagef("soak merge: the summaries are over %d MiB together: not the shards of one soak", maxSummaries>>20)
		}
		var s soak.Summary
		if err := json.Unmarshal(b, &s); err != nil {
			return usagef("soak merge: %s is not a soak summary: %w", filepath.Base(p), err)
		}
		parts = append(parts, s)
	}
	m, err := soak.Merge(parts)
	if err != nil {
		return usagef("soak %w", err)
	}
	if *asJSON {
		return printableEncoder{stdout}.Encode(m)
	}
	writeSoakTable(stdout, m)
	if m.Failed > 0 {
		return checkFailed()
	}
	return nil
}
