package main

import (
	"errors"
	"io"
)

// runKernel is being written; see the issue tracker.
func runKernel(args []string, stdout, stderr io.Writer) error {
	return usageErr(errors.New("kernel: not built yet"))
}
