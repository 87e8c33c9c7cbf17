package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit statuses (docs/protocol.md).
const (
	ExitOK    = 0 // success
	ExitCheck = 1 // a check failed: mismatch, violation, failed test
	ExitUsage = 2 // bad input or usage
	ExitEnv   = 3 // the environment lacks something

	// A recording stopped by a signal exits 128 + the signal's number,
	// as a shell reports a process the signal killed, with its trace
	// kept (docs/protocol.md §8).
	ExitInterrupted = 130 // SIGINT
	ExitTerminated  = 143 // SIGTERM
)

// exitError carries the exit status an error maps to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errSilent marks a failure whose report has already been printed.
var errSilent = errors.New("already reported")

// usageErr wraps err as bad input or usage (exit 2).
func usageErr(err error) error { return &exitError{ExitUsage, err} }

// usagef formats a bad-input error (exit 2).
func usagef(format string, a ...any) error { return usageErr(fmt.Errorf(format, a...)) }

// envErr wraps err as a missing-environment error (exit 3).
func envErr(err error) error { return &exitError{ExitEnv, err} }

// checkFailed reports a failed check whose details were printed (exit 1).
func checkFailed() error { return &exitError{ExitCheck, errSilent} }

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are reported by parseFlags as one line; -h prints the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ktstr %s [flags] %s\n", name, args)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args, mapping -h to success and any flag error to a
// usage error (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	printUsage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on every error
	err = fs.Parse(args)
	fs.Usage = printUsage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage()
			return true, nil
		}
		return false, usageErr(fmt.Errorf("%s: %w", fs.Name(), err))
	}
	return false, nil
}
