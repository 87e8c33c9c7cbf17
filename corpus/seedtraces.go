package corpus

import (
	"io"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/replay"
)

//go:generate go test -run ^TestSeedTracesUpToDate$ . -args -update

// SeedTraceDir is the directory, relative to this package, holding one
// trace per seed stream: SeedTraceDir/NAME.zst. They are generated from
// Seeds (go generate) and checked in, so the replay CLI, the corpus
// exporter and the fuzz targets read the seeds the way they read a
// recorded run.
const SeedTraceDir = "seeds"

// RealTraceDir is the directory, relative to this package, where
// traces recorded from real runs are checked in.
const RealTraceDir = "real"

// Meta returns the metadata of the seed's trace.
func (s Seed) Meta() capture.Meta {
	return capture.Meta{Backend: "seed", Scenario: s.Name}
}

// WriteTrace writes the seed as a trace: one TX bulk-port delivery per
// seed delivery, at the times Stream gives them, and no END record.
func (s Seed) WriteTrace(w io.Writer) error {
	return replay.WriteStream(w, s.Stream(), s.Meta())
}
