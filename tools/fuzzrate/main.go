// Command fuzzrate measures how many inputs a second native Go fuzz
// targets execute, each against a reference target run the same way in
// the same session, and prints the rates and their ratios. `make
// fuzz-rate` uses it to report FuzzDispatch's speed against
// FuzzBaseline, a target of the same package that does nothing: the
// fuzzing engine's own ceiling for that binary on that machine.
//
// Usage:
//
//	fuzzrate [-time D] [-parallel N] [-minimize T] PKG REFERENCE TARGET...
//
// Every target runs `go test -run ^$ -fuzz ^T$ -fuzztime D -parallel N
// -fuzzminimizetime T PKG`, one after the other. The rate is taken from
// the engine's progress lines over the fuzzing phase only (after the
// baseline coverage is gathered): executions between the first and the
// last line, divided by the time between them.
//
// Exit status: 0; 1 when a target fails or its output has no progress
// to measure; 2 on bad arguments.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

func main() {
	fuzztime := flag.Duration("time", 30*time.Second, "how long each target fuzzes")
	parallel := flag.Int("parallel", 1, "fuzzing workers")
	minimize := flag.String("minimize", "100x", "-fuzzminimizetime: the bound on minimizing a new input, which stops execution counting")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: fuzzrate [-time D] [-parallel N] [-minimize T] PKG REFERENCE TARGET...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 3 {
		flag.Usage()
		os.Exit(2)
	}
	pkg, targets := flag.Arg(0), flag.Args()[1:]
	fmt.Printf("fuzzrate: %s, each target %s on %d worker(s), minimization bounded at %s, in turn\n", pkg, *fuzztime, *parallel, *minimize)
	var ref float64
	for i, t := range targets {
		cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+t+"$", "-fuzztime", fuzztime.String(),
			"-parallel", strconv.Itoa(*parallel), "-fuzzminimizetime", *minimize, pkg)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "fuzzrate: %s failed (%v); its output:\n%s", t, err, out.Bytes())
			os.Exit(1)
		}
		r, err := parse(&out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fuzzrate: %s: %v\n", t, err)
			os.Exit(1)
		}
		rate := r.rate()
		if i == 0 {
			ref = rate
			fmt.Printf("  %-16s %9.0f execs/s over %5.1fs   (reference)\n", t, rate, r.span().Seconds())
			continue
		}
		fmt.Printf("  %-16s %9.0f execs/s over %5.1fs   ratio %.2f of %s\n", t, rate, r.span().Seconds(), rate/ref, targets[0])
	}
}

// progress is the first and last point of the fuzzing phase.
type progress struct {
	first, last point
}

type point struct {
	elapsed time.Duration
	execs   int64
}

func (p progress) span() time.Duration { return p.last.elapsed - p.first.elapsed }

func (p progress) rate() float64 {
	return float64(p.last.execs-p.first.execs) / p.span().Seconds()
}

// progressLine matches the engine's lines during fuzzing, e.g.
// "fuzz: elapsed: 1m3s, execs: 383177 (15454/sec), new interesting: 55 (total: 159)".
var progressLine = regexp.MustCompile(`^fuzz: elapsed: (\S+), execs: (\d+) `)

// parse reads `go test -fuzz` output and returns the first and last
// progress points of the fuzzing phase.
func parse(r io.Reader) (progress, error) {
	var p progress
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := progressLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			return p, fmt.Errorf("progress line %q: %w", sc.Text(), err)
		}
		x, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return p, fmt.Errorf("progress line %q: %w", sc.Text(), err)
		}
		if n == 0 {
			p.first = point{d, x}
		}
		p.last = point{d, x}
		n++
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if n < 2 || p.span() <= 0 {
		return p, errors.New("fewer than two progress lines a second or more apart: fuzz longer (-time)")
	}
	return p, nil
}
