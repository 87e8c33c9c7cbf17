package main

import (
	"errors"
	"io"
)

// runRecord is being written; see the issue tracker.
func runRecord(args []string, stdout, stderr io.Writer) error {
	return usageErr(errors.New("record: not built yet"))
}
