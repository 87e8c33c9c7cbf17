package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
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
	modelLimit := fs.Int64("model-limit", replay.DefaultModelLimit, "hold streams up to this many bytes in memory for the model and split checks")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("replay: no trace given; usage: ktstr replay [flags] TRACE...")
	}
	c, err := replay.ParseChunking(*chunking)
	if err != nil {
		return usageErr(fmt.Errorf("replay: --chunking: %w", err))
	}
	if *mutate < 0 {
		return usagef("replay: --mutate must be ≥ 0, got %d", *mutate)
	}
	if *saveDir != "" && *mutate == 0 {
		return usagef("replay: --save-failures needs --mutate N")
	}

	var badInput error
	failed := false
	for _, path := range fs.Args() {
		ok, err := replayOne(path, c, *modelLimit, *asJSON, stdout)
		if err != nil {
			if badInput == nil {
				badInput = err
			}
			fmt.Fprintf(stderr, "ktstr: %v\n", oneLine(err))
			continue
		}
		failed = failed || !ok
		if *mutate > 0 {
			ok, err := mutateOne(path, *mutate, *seed, *saveDir, *asJSON, stdout)
			if err != nil {
				if badInput == nil {
					badInput = err
				}
				fmt.Fprintf(stderr, "ktstr: %v\n", oneLine(err))
				continue
			}
			failed = failed || !ok
		}
	}
	switch {
	case badInput != nil:
		return usageErr(errors.Join(errSilent, badInput))
	case failed:
		return checkFailed()
	}
	return nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func replayOne(path string, c replay.Chunking, modelLimit int64, asJSON bool, stdout io.Writer) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	rep, err := replay.Trace(f, path, replay.Options{Chunking: c, ModelLimit: modelLimit})
	if err != nil {
		return false, fmt.Errorf("replay: %w", err)
	}
	if asJSON {
		js, err := json.Marshal(rep)
		if err != nil {
			return false, fmt.Errorf("replay: encoding the report: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", js)
	} else {
		writeReport(stdout, rep, c)
	}
	return rep.OK(), nil
}

// writeReport prints the human-readable form of a replay report.
func writeReport(w io.Writer, rep *replay.Report, c replay.Chunking) {
	m := rep.Meta
	src := m.Backend
	if m.Accel != "" {
		src += "/" + m.Accel
	}
	if m.Scenario != "" {
		src += ", scenario " + m.Scenario
	}
	if m.KernelRelease != "" {
		src += ", kernel " + m.KernelRelease
	}
	fmt.Fprintf(w, "%s: %d frames, %d bytes in %d deliveries (%s), chunking %s\n",
		rep.Trace, rep.Frames, rep.Bytes, rep.Deliveries, strings.TrimPrefix(src, ", "), c)
	fmt.Fprintf(w, "  outcome:    %s\n", summarize(&rep.Outcome))
	fmt.Fprintf(w, "  rejected:   %s\n", rejectedSummary(&rep.Outcome.Rejected))
	if rep.End != nil {
		fmt.Fprintf(w, "  run ended:  %s after %.3fs (exit status %d)\n", rep.End.Reason, float64(rep.End.TimeNS)/1e9, rep.End.ExitStatus)
	}
	switch {
	case rep.Recorded == nil:
		fmt.Fprintf(w, "  recorded:   none in this trace (nothing to compare)\n")
	case rep.Match:
		fmt.Fprintf(w, "  recorded:   replay matches the live outcome\n")
	default:
		fmt.Fprintf(w, "  recorded:   MISMATCH with the live outcome:\n")
		for _, d := range rep.Diff {
			fmt.Fprintf(w, "              %s\n", d)
		}
	}
	if rep.Truncated != nil {
		fmt.Fprintf(w, "  truncated:  %v (replayed what was there)\n", rep.Truncated)
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
		fmt.Fprintf(w, "              %s\n", v)
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

type campaignJSON struct {
	Trace     string         `json:"trace"`
	Mutants   int            `json:"mutants"`
	Failing   int            `json:"failing"`
	Seed      uint64         `json:"seed"`
	Operators []operatorJSON `json:"operators"`
	Saved     []string       `json:"saved"`
}

type operatorJSON struct {
	Name       string `json:"name"`
	Mutants    int    `json:"mutants"`
	Frames     int64  `json:"frames"`
	Torn       uint64 `json:"torn"`
	Rejected   uint64 `json:"rejected"`
	Violations int    `json:"violations"`
}

func mutateOne(path string, n int, seed uint64, saveDir string, asJSON bool, stdout io.Writer) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("replay --mutate: %w", err)
	}
	defer f.Close()
	s, meta, _, more, err := replay.ReadPrefix(f, mutateLimit)
	if err != nil {
		return false, fmt.Errorf("replay --mutate: %s: %w", path, err)
	}
	f.Close()
	if more {
		fmt.Fprintf(os.Stderr, "replay --mutate: %s: its TX stream is longer than %d bytes; mutating its first %d bytes (%d deliveries)\n",
			path, mutateLimit, len(s.Data), s.Deliveries())
	}
	c := replay.Mutate(s, n, seed)
	mutants, failing := c.Total()
	var saved []string
	if saveDir != "" && failing > 0 {
		if err := os.MkdirAll(saveDir, 0o755); err != nil {
			return false, fmt.Errorf("replay --save-failures: %w", err)
		}
		base := strings.TrimSuffix(filepath.Base(path), ".zst")
		for _, fl := range c.Failures {
			name := filepath.Join(saveDir, fmt.Sprintf("%s-mutant-%d-%s.zst", base, fl.Index, fl.Operator))
			meta.Extra = map[string]string{"mutant_of": path, "operator": fl.Operator, "seed": fmt.Sprint(seed)}
			meta.Backend = "mutant"
			if err := saveMutant(name, fl.Stream, meta); err != nil {
				return false, fmt.Errorf("replay --save-failures: %w", err)
			}
			saved = append(saved, name)
		}
	}
	if asJSON {
		cj := campaignJSON{Trace: path, Mutants: mutants, Failing: failing, Seed: seed, Saved: saved}
		if cj.Saved == nil {
			cj.Saved = []string{}
		}
		for _, o := range c.Operators {
			cj.Operators = append(cj.Operators, operatorJSON(o))
		}
		js, err := json.Marshal(cj)
		if err != nil {
			return false, fmt.Errorf("replay --mutate: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", js)
	} else {
		fmt.Fprintf(stdout, "%s: mutation campaign, %d mutants, seed %d\n", path, mutants, seed)
		c.WriteTable(stdout)
		for _, s := range saved {
			fmt.Fprintf(stdout, "saved %s (replay it with: ktstr replay %s)\n", s, s)
		}
	}
	return failing == 0, nil
}

func saveMutant(name string, s *replay.Stream, meta capture.Meta) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := replay.WriteStream(f, s, meta); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return f.Close()
}
