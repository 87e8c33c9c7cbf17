package main

import (
	"errors"
	"io"
)

// runCorpus is being written; see the issue tracker.
func runCorpus(args []string, stdout, stderr io.Writer) error {
	return usageErr(errors.New("corpus: not built yet"))
}
