package main

import (
	"errors"
	"io"
)

// runReplay is being written; see the issue tracker.
func runReplay(args []string, stdout, stderr io.Writer) error {
	return usageErr(errors.New("replay: not built yet"))
}
