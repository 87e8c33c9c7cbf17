// Command ktstr records the bulk port of a scheduler test VM, replays
// recorded traces through the same Assembler and Dispatch, mutates them,
// and manages kernels and fuzz corpora.
//
// It sits at both ends of the data flow (bytes → tap → Assembler →
// Dispatch → Sinks → Outcome): `record` produces the bytes and the tap,
// `replay` and `trace` consume them.
//
// Exit status: 0 success, 1 a check failed, 2 bad input or usage, 3 the
// environment lacks something (the message says how to fix it); a
// recording ended by SIGINT or SIGTERM exits 130 or 143, its trace kept.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"
)

// command is one ktstr subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
	// softLimit is the Go heap's soft limit while the command runs
	// (runtime/debug.SetMemoryLimit), so that garbage never carries the
	// process past its memory bound: what the command keeps is bounded
	// by construction (docs/protocol.md), what it discards is collected
	// before it piles up. 0 leaves the runtime's default. GOMEMLIMIT in
	// the environment overrides it.
	softLimit int64
}

// Soft heap limits: a reader of traces stays under 64 MiB of RSS, a
// recorder under 256 MiB, whatever the guest or the trace holds.
const (
	readSoftLimit   = 32 << 20
	recordSoftLimit = 160 << 20
)

func commands() map[string]command {
	return map[string]command{
		"record": {"boot a kernel with the guest agent and record the bulk port", runRecord, recordSoftLimit},
		"replay": {"replay traces through the dispatch core and check them", runReplay, readSoftLimit},
		"trace":  {"show, summarise or import traces", runTrace, readSoftLimit},
		"corpus": {"export traces as Go fuzz corpus files", runCorpus, readSoftLimit},
		"kernel": {"fetch or build guest kernels", runKernel, 0},
		"rerun":  {"record again the configuration a trace records, and diff the two", runRerun, recordSoftLimit},
		"soak":   {"run one record configuration many times, keep the runs that went wrong", runSoak, readSoftLimit},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		fmt.Fprintln(stderr, "ktstr: no command given; usage: ktstr COMMAND [flags] [args]; run 'ktstr help' for the commands")
		return ExitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		return ExitOK
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ktstr: unknown command %q; run 'ktstr help' for the list\n", args[0])
		return ExitUsage
	}
	if c.softLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(c.softLimit))
	}
	// A file past the size limit (ulimit -f) is a write error to report,
	// not a signal that kills the process with a core dump.
	signal.Ignore(syscall.SIGXFSZ)
	// Every write to standard output and error is checked, whether the
	// command looked at it or not (docs/protocol.md §8).
	out, errw := &checkedWriter{w: stdout}, &checkedWriter{w: stderr}
	err := c.run(args[1:], out, errw)
	switch {
	case errw.failed():
		// Nowhere left to say why.
		return ExitUsage
	case out.failed():
		err = usageErr(fmt.Errorf("writing standard output: %w; check the disk or where the output goes (nothing more was written)", out.err))
	}
	code := report(errw, err)
	if errw.failed() {
		return ExitUsage
	}
	return code
}

// report prints err as one line and maps it to an exit status.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	code := ExitCheck
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(stderr, "ktstr: %s\n", errorLine(err.Error()))
	}
	return code
}

// maxErrorLine bounds the error line: a message quoting a file's bytes
// (a trace's field, a file name) is cut there.
const maxErrorLine = 4096

// errorLine makes msg one line a terminal shows as it is: newlines
// become spaces, and everything else safeInline escapes (escape
// sequences, CR, BEL, C1 controls, direction overrides, invalid UTF-8)
// is escaped wherever it came from (a file name in an os error is not
// escaped by its maker). Past maxErrorLine bytes the rest is counted,
// not printed.
func errorLine(msg string) string {
	line := safeInline(strings.ReplaceAll(msg, "\n", " "))
	if len(line) <= maxErrorLine {
		return line
	}
	cut := maxErrorLine
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes more)", line[:cut], len(line)-cut)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: ktstr COMMAND [flags] [args]")
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "  %-7s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ktstr COMMAND -h' for a command's flags.")
}
