package corpus

import (
	"fmt"
	"io"
	"path/filepath"

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

// TracePaths returns the paths of the traces checked in under
// root/corpus, root being the module's root directory: those of
// SeedTraceDir, then those of RealTraceDir. The fuzz targets start from
// them (fuzz/internal/seeds), and lfuzz merge keeps their exports.
func TracePaths(root string) ([]string, error) {
	var paths []string
	for _, dir := range []string{SeedTraceDir, RealTraceDir} {
		m, err := filepath.Glob(filepath.Join(root, "corpus", dir, "*.zst"))
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		paths = append(paths, m...)
	}
	return paths, nil
}

// Meta returns the metadata of the seed's trace.
func (s Seed) Meta() capture.Meta {
	return capture.Meta{Backend: "seed", Scenario: s.Name}
}

// WriteTrace writes the seed as a trace: one TX bulk-port delivery per
// seed delivery, at the times Stream gives them, and no END record.
func (s Seed) WriteTrace(w io.Writer) error {
	return replay.WriteStream(w, s.Stream(), s.Meta())
}
