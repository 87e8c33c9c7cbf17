package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// helper runs one of the helper processes the agent starts by
// re-running its own binary, and returns its exit status.
func helper(name string, args []string) int {
	switch name {
	case "worker":
		return workerMain(args, os.Stdout, os.Stderr)
	case "sched-standin":
		return standinMain(args, os.Stderr)
	case "scenarios":
		// The host asks the agent it just built which scenarios exist,
		// so there is one list.
		return listScenarios(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "ktstr-init: unknown helper %q (want worker, sched-standin or scenarios)\n", name)
		return 2
	}
}

// listScenarios prints one "name<TAB>help" line per built-in scenario.
func listScenarios(w io.Writer) int {
	reg, err := newRegistry(builtinScenarios())
	if err != nil {
		fmt.Fprintf(os.Stderr, "ktstr-init: %v\n", err)
		return 1
	}
	for _, n := range reg.names() {
		s, _ := reg.lookup(n)
		fmt.Fprintf(w, "%s\t%s\n", n, s.help)
	}
	return 0
}

// workerMain spins on the CPU for -d, then reports how many iterations
// it managed: one line on stderr at start, one on stdout at the end, so
// both SERR and SOUT carry something.
func workerMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int("id", 0, "worker number")
	d := fs.Duration("d", time.Second, "how long to spin")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Fprintf(stderr, "worker %d: spinning for %v\n", *id, *d)
	n := spin(*d)
	fmt.Fprintf(stdout, "worker %d: %d iterations\n", *id, n)
	return 0
}

// spin burns CPU until d has passed and returns the iterations done.
func spin(d time.Duration) uint64 {
	deadline := time.Now().Add(d)
	var n, x uint64 = 0, 1
	for {
		for i := 0; i < 1<<14; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		n += 1 << 14
		if time.Now().After(deadline) {
			if x == 0 { // never true for a non-zero xorshift state; keeps x live
				n++
			}
			return n
		}
	}
}

// standinMain is the built-in stand-in scheduler: it logs, waits -delay
// and exits with -status, as a crashing scheduler would.
func standinMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sched-standin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	delay := fs.Duration("delay", time.Second, "how long to run before exiting")
	status := fs.Int("status", 7, "exit status")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Fprintf(stderr, "sched-standin: running, will exit with status %d in %v\n", *status, *delay)
	time.Sleep(*delay)
	fmt.Fprintf(stderr, "sched-standin: exiting with status %d\n", *status)
	return *status
}
