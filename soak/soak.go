// Package soak runs one record configuration many times and keeps what
// went wrong: the cure for flaky VM scheduler rigs is to run a
// configuration until it fails, keep the failing runs' traces, and
// replay them exactly. Each run is a whole pass through the data flow
// (bytes → tap → Assembler → Dispatch → Sinks → Outcome) — a recorded
// run, then its replay — and soak judges the two together.
//
// Runs can be split into shards (Shard) so that CI jobs (a GitHub
// Actions matrix, a Kubernetes Indexed Job) each take their share;
// Merge combines the shards' summaries.
package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of a soak: its runs and shards are counted in memory, and a
// summary read back is checked against them.
const (
	// MaxRuns is the most runs one soak may have over all its shards
	// (at ten seconds a run, four months of one VM).
	MaxRuns = 1 << 20
	// MaxShards is the most shards a soak may be split into (a
	// Kubernetes Indexed Job has at most 100,000 completions).
	MaxShards = 100_000
	// maxSeconds is the longest a summary may say a soak took: a
	// century.
	maxSeconds = 100 * 365 * 24 * 3600
)

// Shard is this job's share of the runs: run i belongs to it when
// i % Count == Index.
type Shard struct {
	Index, Count int
}

// ParseShard reads "I/N" (0 ≤ I < N) or "auto/N", which takes I from
// the JOB_COMPLETION_INDEX environment variable (as a Kubernetes Indexed
// Job sets it); getenv is os.Getenv in use.
func ParseShard(s string, getenv func(string) string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want I/N (0 ≤ I < N) or auto/N", s)
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 || count > MaxShards {
		return Shard{}, fmt.Errorf("shard %q: N must be an integer from 1 to %d", s, MaxShards)
	}
	if i == "auto" {
		i = getenv("JOB_COMPLETION_INDEX")
		if i == "" {
			return Shard{}, fmt.Errorf("shard %q: JOB_COMPLETION_INDEX is not set (it is set by a Kubernetes Indexed Job); give I/N instead", s)
		}
	}
	index, err := strconv.Atoi(i)
	if err != nil || index < 0 || index >= count {
		return Shard{}, fmt.Errorf("shard %q: I must be an integer from 0 to %d", s, count-1)
	}
	return Shard{Index: index, Count: count}, nil
}

// String returns the form ParseShard reads.
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Runs returns the run indices of [0, total) in this shard; total is at
// most MaxRuns (Soak checks it), so the list is bounded.
func (s Shard) Runs(total int) []int {
	if s.Count == 0 {
		s = Shard{0, 1}
	}
	out := make([]int, 0, s.Len(total))
	for i := s.Index; i < total; i += s.Count {
		out = append(out, i)
	}
	return out
}

// Len returns how many of the runs [0, total) are in this shard.
func (s Shard) Len(total int) int {
	if s.Count == 0 {
		s = Shard{0, 1}
	}
	if s.Index >= total {
		return 0
	}
	return (total-1-s.Index)/s.Count + 1
}

// Result is how one run went.
type Result struct {
	Index      int      `json:"run"`
	Trace      string   `json:"trace"`       // where its trace is (removed unless Kept)
	ExitStatus int      `json:"exit_status"` // of `ktstr record`
	Reason     string   `json:"reason"`      // the END record's reason, or what kept the run from one
	Match      bool     `json:"match"`       // replay reproduced the live outcome
	Violations []string `json:"violations"`  // broken invariants in the replay
	Expected   bool     `json:"expected"`    // the run ended as expected
	Why        string   `json:"why,omitempty"`
	Kept       bool     `json:"kept"`
	Seconds    float64  `json:"seconds"`
}

// Expect is what an expected run looks like.
type Expect struct {
	Reasons []string // END reasons that are expected (e.g. poweroff, sched_exit)
}

// Judge sets r.Expected and r.Why.
func (e Expect) Judge(r *Result) {
	switch {
	case r.Reason == "":
		r.Why = "no END record (the recorder died, or never started)"
	case !contains(e.Reasons, r.Reason):
		r.Why = fmt.Sprintf("ended %s, expected %s", r.Reason, strings.Join(e.Reasons, " or "))
	case r.ExitStatus != 0:
		r.Why = fmt.Sprintf("ktstr record exited %d", r.ExitStatus)
	case !r.Match:
		r.Why = "replay does not reproduce the live outcome"
	case len(r.Violations) > 0:
		r.Why = fmt.Sprintf("%d invariants broken: %s", len(r.Violations), r.Violations[0])
	default:
		r.Expected, r.Why = true, ""
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Runner performs run i, recording its trace at path, and returns what
// it saw (Expected and Kept are soak's to set).
type Runner func(ctx context.Context, i int, path string) Result

// Config is one soak.
type Config struct {
	Runs     int    // runs in all shards together, 1 to MaxRuns
	Jobs     int    // runs at once in this process
	Shard    Shard  // this process's share
	Dir      string // where traces are written; kept ones stay
	Expect   Expect
	Record   []string // what is run (the record flags): kept in the Summary, so Merge can tell soaks apart
	Run      Runner
	Progress func(done, running, kept, total int, elapsed time.Duration) // may be nil
	Each     func(Result)                                                // each run as it ends; may be nil
}

// Summary is a soak's (or a merge of shards') outcome.
type Summary struct {
	Shard   string         `json:"shard"`   // "I/N", or "merged"
	Total   int            `json:"total"`   // the soak's runs over all its shards
	Record  []string       `json:"record"`  // what was run (Config.Record)
	Expect  []string       `json:"expect"`  // the END reasons expected
	Runs    int            `json:"runs"`    // runs performed
	Reasons map[string]int `json:"reasons"` // END reason → count ("no_end" for none)
	Kept    []string       `json:"kept"`    // traces of the runs that did not end as expected
	Failed  int            `json:"failed"`  // runs that did not end as expected
	Seconds float64        `json:"seconds"` // wall time
}

// Soak performs the shard's runs, Jobs at a time, keeping the traces of
// the runs that did not end as expected and removing the rest.
func Soak(ctx context.Context, c Config) (Summary, error) {
	if c.Run == nil || c.Jobs < 1 || c.Runs < 1 || c.Dir == "" {
		return Summary{}, errors.New("soak: Runs, Jobs ≥ 1, Dir and Run are required")
	}
	if c.Runs > MaxRuns {
		return Summary{}, fmt.Errorf("soak: %d runs: at most %d", c.Runs, MaxRuns)
	}
	runs := c.Shard.Runs(c.Runs)
	sum := Summary{Shard: c.Shard.String(), Total: c.Runs, Record: nonNil(c.Record), Expect: nonNil(c.Expect.Reasons),
		Reasons: map[string]int{}, Kept: []string{}}
	start := time.Now()
	var mu sync.Mutex
	done, running := 0, 0
	report := func() {
		if c.Progress != nil {
			c.Progress(done, running, len(sum.Kept), len(runs), time.Since(start))
		}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range c.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				mu.Lock()
				running++
				report()
				mu.Unlock()
				path := RunPath(c.Dir, i)
				t0 := time.Now()
				r := c.Run(ctx, i, path)
				r.Index, r.Trace, r.Seconds = i, path, time.Since(t0).Seconds()
				c.Expect.Judge(&r)
				if r.Expected {
					_ = os.Remove(path)
				} else {
					r.Kept = fileExists(path)
				}
				mu.Lock()
				running--
				done++
				sum.Runs++
				reason := r.Reason
				if reason == "" {
					reason = "no_end"
				}
				sum.Reasons[reason]++
				if !r.Expected {
					sum.Failed++
					if r.Kept {
						sum.Kept = append(sum.Kept, path)
					}
				}
				if c.Each != nil {
					c.Each(r)
				}
				report()
				mu.Unlock()
			}
		}()
	}
feed:
	for _, i := range runs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	sort.Strings(sum.Kept)
	sum.Seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return sum, fmt.Errorf("soak interrupted after %d of %d runs: %w", sum.Runs, len(runs), err)
	}
	return sum, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// RunPath is where run i's trace is written in dir.
func RunPath(dir string, i int) string { return fmt.Sprintf("%s/run-%04d.zst", dir, i) }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// check says what makes p not a summary of shard sh of a soak of total
// runs, as Soak writes them: counts out of range, reasons that do not
// add up to the runs, or fewer or more runs than the shard has (an
// interrupted shard is not a whole one).
func (p Summary) check(sh Shard, total int) error {
	want := sh.Len(total)
	if p.Runs != want {
		return fmt.Errorf("shard %s performed %d of its %d runs (interrupted, or not of this soak); run it again", p.Shard, p.Runs, want)
	}
	sumReasons, unexpected := 0, 0
	for k, v := range p.Reasons {
		if v < 1 || v > want {
			return fmt.Errorf("shard %s counts %d runs ended %q, of its %d", p.Shard, v, k, want)
		}
		sumReasons += v
		if !contains(p.Expect, k) {
			unexpected += v
		}
	}
	switch {
	case p.Failed < 0 || p.Failed > p.Runs:
		return fmt.Errorf("shard %s says %d of its %d runs did not end as expected", p.Shard, p.Failed, p.Runs)
	case sumReasons != p.Runs:
		return fmt.Errorf("shard %s: its END reasons count %d runs, not its %d", p.Shard, sumReasons, p.Runs)
	case unexpected > p.Failed:
		// A run that ended otherwise than expected is a failed run, so
		// these are at least that many.
		return fmt.Errorf("shard %s says %d runs did not end as expected, but %d ended otherwise than %s", p.Shard, p.Failed, unexpected, strings.Join(p.Expect, " or "))
	case len(p.Kept) > p.Failed:
		return fmt.Errorf("shard %s keeps %d traces of %d unexpected runs", p.Shard, len(p.Kept), p.Failed)
	case !(p.Seconds >= 0 && p.Seconds <= maxSeconds):
		return fmt.Errorf("shard %s says it took %g s", p.Shard, p.Seconds)
	}
	return nil
}

// Merge combines shard summaries. It refuses what would make the merged
// one false: summaries of different soaks (total runs, record flags,
// expected reasons) or shard counts, the same shard twice, a shard
// missing (named), a shard that did not perform all its runs, and
// counts that do not add up.
func Merge(parts []Summary) (Summary, error) {
	out := Summary{Shard: "merged", Reasons: map[string]int{}, Kept: []string{}}
	if len(parts) == 0 {
		return Summary{}, errors.New("merge: no summaries")
	}
	first := parts[0]
	if first.Total < 1 || first.Total > MaxRuns {
		return Summary{}, fmt.Errorf("merge: shard %q says the soak had %d runs; a soak has 1 to %d (a summary from before ktstr wrote the total? run the shard again)", first.Shard, first.Total, MaxRuns)
	}
	out.Total, out.Record, out.Expect = first.Total, nonNil(first.Record), nonNil(first.Expect)
	seen := map[int]bool{}
	count := 0
	for _, p := range parts {
		s, err := ParseShard(p.Shard, func(string) string { return "" })
		if err != nil {
			return Summary{}, fmt.Errorf("merge: %w", err)
		}
		if count == 0 {
			count = s.Count
			if count > first.Total {
				return Summary{}, fmt.Errorf("merge: %d shards of a soak of %d runs", count, first.Total)
			}
		}
		switch {
		case s.Count != count:
			return Summary{}, fmt.Errorf("merge: shard %s is of %d shards, the others of %d", p.Shard, s.Count, count)
		case p.Total != first.Total || !slices.Equal(p.Record, first.Record) || !slices.Equal(p.Expect, first.Expect):
			return Summary{}, fmt.Errorf("merge: shard %s is of another soak than shard %s (its runs, record flags or expected reasons differ)", p.Shard, first.Shard)
		case seen[s.Index]:
			return Summary{}, fmt.Errorf("merge: shard %s given twice", p.Shard)
		}
		if err := p.check(s, first.Total); err != nil {
			return Summary{}, fmt.Errorf("merge: %w", err)
		}
		seen[s.Index] = true
		out.Runs += p.Runs
		out.Failed += p.Failed
		out.Seconds = max(out.Seconds, p.Seconds)
		for k, v := range p.Reasons {
			out.Reasons[k] += v
		}
		out.Kept = append(out.Kept, p.Kept...)
	}
	var missing []string
	left := count - len(seen)
	for i := 0; i < count && len(missing) < 10; i++ {
		if !seen[i] {
			missing = append(missing, fmt.Sprintf("%d/%d", i, count))
		}
	}
	if left > len(missing) {
		missing = append(missing, fmt.Sprintf("and %d more", left-len(missing)))
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("merge: shards %s are missing", strings.Join(missing, ", "))
	}
	sort.Strings(out.Kept)
	return out, nil
}
