package fuzz

import (
	"testing"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/fuzz/internal/seeds"
)

// FuzzBaseline is the reference the dispatch target's speed is measured
// against (dispatch_test.go): it takes the same seed inputs and does
// nothing with them, so its executions per second are what the fuzzing
// engine itself manages with this package's binary on this machine.
// `make fuzz-rate` runs both for the same time and prints the dispatch
// target's rate as a share of it; `make fuzz` and the libFuzzer build
// leave it out.
func FuzzBaseline(f *testing.F) {
	streams, err := seeds.Streams()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range streams {
		f.Add(corpus.EncodeDispatchInput(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {})
}
