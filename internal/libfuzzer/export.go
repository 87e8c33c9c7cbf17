package libfuzzer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// NoSeedsEnv, set to 1, makes every target that asks Enabled start from
// an empty corpus (no f.Add seeds); with the package copied away from
// its testdata/ this measures how long fuzzing takes to find a bug on
// its own (make fuzz-brokengate).
const NoSeedsEnv = "KTSTR_FUZZ_NOSEEDS"

// ExportEnv names a directory. When it is set, the function Exporter
// returns writes every input a target's fuzz function is called with into
// DIR/TARGET/HASH, as the libFuzzer input that go-118-fuzz-build decodes
// into the same arguments (Encode). TARGET is the first element of
// t.Name(): the fuzz function's name under `go test`,
// "libFuzzer" in a go-118-fuzz-build binary; HASH is the file's SHA-256.
//
// `lfuzz seeds` runs `go test -run '^TARGET$'` with it set: go test calls
// the fuzz function once per seed, f.Add and testdata/fuzz alike, and the
// files become the target's NAME_seed_corpus.zip. `lfuzz check` runs the
// libFuzzer binary over that corpus with it set and requires the same
// files back, which shows that go-118-fuzz-build's decoder reads each
// seed as the values go test ran.
const ExportEnv = "KTSTR_LIBFUZZER_SEEDS"

// T is the part of a fuzz function's *testing.T that exporting uses.
// go-118-fuzz-build's T has it too (it does not implement testing.TB).
type T interface {
	Name() string
	Fatal(args ...any)
}

// Exporter returns nil when ExportEnv is unset (every fuzzing run), else
// the function a target's fuzz function calls first with its T and its
// arguments to have them written as ExportEnv says. A write that fails
// fails the input (t.Fatal). Targets call it as
//
//	export := libfuzzer.Exporter()
//	f.Fuzz(func(t *testing.T, data []byte) {
//		if export != nil {
//			export(t, data)
//		}
//		…
//	})
//
// so that a fuzzing run pays one nil check per execution; the fuzz
// function stays a literal, as go vet's tests check wants.
func Exporter() func(t T, args ...any) {
	dir := os.Getenv(ExportEnv)
	if dir == "" {
		return nil
	}
	return func(t T, args ...any) {
		if err := write(dir, t.Name(), args); err != nil {
			t.Fatal(err)
		}
	}
}

// write writes one call's arguments for the test named name.
func write(dir, name string, args []any) error {
	target, _, _ := strings.Cut(name, "/")
	raw, err := Encode(args...)
	if err != nil {
		return fmt.Errorf("libfuzzer: exporting an input of %s: %w", target, err)
	}
	sum := sha256.Sum256(raw)
	d := filepath.Join(dir, target)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("libfuzzer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d, hex.EncodeToString(sum[:])), raw, 0o644); err != nil {
		return fmt.Errorf("libfuzzer: %w", err)
	}
	return nil
}
