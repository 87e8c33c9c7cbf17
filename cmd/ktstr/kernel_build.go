package main

import (
	"errors"
	"io"
)

// runKernelBuild is being written (sched_ext kernel build).
func runKernelBuild(args []string, stdout, stderr io.Writer) error {
	return usageErr(errors.New("kernel build: not built yet"))
}
