package main

import (
	"errors"
	"io"
)

// runTrace is being written; see the issue tracker.
func runTrace(args []string, stdout, stderr io.Writer) error {
	return usageErr(errors.New("trace: not built yet"))
}
