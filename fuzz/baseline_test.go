package fuzz

import (
	"testing"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/fuzz/internal/seeds"
)

// FuzzBaseline is the reference FuzzDispatch's speed is measured
// against: it takes the same seed inputs and does nothing with them, so
// its executions per second are what the fuzzing engine itself manages
// with this package's binary on this machine. `make fuzz-rate` runs both
// for the same time and prints FuzzDispatch's rate as a share of it;
// `make fuzz` leaves it out.
func FuzzBaseline(f *testing.F) {
	for _, s := range seeds.Streams(f) {
		f.Add(corpus.EncodeDispatchInput(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {})
}
