package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// ErrNoStats reports engine output without the numbers asked for.
var ErrNoStats = errors.New("libfuzzer: no execution counts in the engine's output")

// LibFuzzerRun is what a libFuzzer run printed with -print_final_stats=1.
type LibFuzzerRun struct {
	Execs       int64 // stat::number_of_executed_units
	ExecsPerSec int64 // stat::average_exec_per_sec (libFuzzer's own, whole seconds)
	Cov         int64 // "cov:" of the last status line: edges covered
	Corpus      int64 // "corp:" of the last status line: inputs in the corpus
}

var (
	statLine   = regexp.MustCompile(`^stat::([a-z_]+):\s+(\d+)`)
	statusLine = regexp.MustCompile(`^#\d+\s+\S+\s+cov: (\d+) ft: \d+ corp: (\d+)/`)
)

// ParseLibFuzzer reads the output of a libFuzzer run.
func ParseLibFuzzer(out []byte) (LibFuzzerRun, error) {
	var r LibFuzzerRun
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := statusLine.FindStringSubmatch(line); m != nil {
			r.Cov, _ = strconv.ParseInt(m[1], 10, 64)
			r.Corpus, _ = strconv.ParseInt(m[2], 10, 64)
			continue
		}
		m := statLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseInt(m[2], 10, 64)
		switch m[1] {
		case "number_of_executed_units":
			r.Execs, found = v, true
		case "average_exec_per_sec":
			r.ExecsPerSec = v
		}
	}
	if !found {
		return r, fmt.Errorf("%w: no stat::number_of_executed_units line (was -print_final_stats=1 given?)", ErrNoStats)
	}
	return r, nil
}

// GoFuzzRun is what a `go test -fuzz` run printed: its last progress
// line.
type GoFuzzRun struct {
	Elapsed     time.Duration // "elapsed:", whole seconds
	Execs       int64         // "execs:"
	Interesting int64         // the corpus size: "(total: N)"
}

// DeadlineRace reports whether a failed `go test -fuzz` log is the
// spurious failure of Go 1.26's fuzzing coordinator at a duration
// -fuzztime's deadline (go.dev/issue/75804, fixed in Go 1.27): "context
// deadline exceeded" and no failing input written. A real finding
// always writes one ("Failing input written to ...").
func DeadlineRace(log []byte) bool {
	return bytes.Contains(log, []byte("context deadline exceeded")) && !bytes.Contains(log, []byte("Failing input written to"))
}

// goProgress matches the engine's progress lines, e.g. "fuzz: elapsed:
// 21s, execs: 383177 (15454/sec), new interesting: 55 (total: 159)".
var goProgress = regexp.MustCompile(`^fuzz: elapsed: (\S+), execs: (\d+) \(\d+/sec\), new interesting: \d+ \(total: (\d+)\)`)

// ParseGoFuzz reads the output of a `go test -fuzz` run and returns its
// last progress line.
func ParseGoFuzz(out []byte) (GoFuzzRun, error) {
	var r GoFuzzRun
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := goProgress.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			return r, fmt.Errorf("progress line %q: %w", sc.Text(), err)
		}
		r.Elapsed = d
		r.Execs, _ = strconv.ParseInt(m[2], 10, 64)
		r.Interesting, _ = strconv.ParseInt(m[3], 10, 64)
		found = true
	}
	if !found || r.Elapsed <= 0 {
		return r, fmt.Errorf("%w: no progress line a second or more into fuzzing", ErrNoStats)
	}
	return r, nil
}

// Rate returns the run's executions per second over its whole length.
func (r GoFuzzRun) Rate() float64 { return float64(r.Execs) / r.Elapsed.Seconds() }
