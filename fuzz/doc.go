// Package fuzz holds the native Go fuzz targets of the dispatch core.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) the fuzzer stands in for the tap: it makes up the bytes, and
// every target drives the production code from there on.
//
// The targets, by file (docs/fuzzing.md names them; the files here
// leave the names to their own harness file, see below):
//
//   - dispatch_test.go runs each input (a delivery table and a TX
//     stream, corpus.DecodeDispatchInput) through replay.CheckStream:
//     invariants 1–8 and 10 of docs/protocol.md, and 6 against a second
//     split.
//   - assembler_test.go frames one stream under two splittings and
//     whole, and requires the same messages and counts (invariant 6).
//   - payloads_test.go checks the SNRQ, KORQ and KADR codecs of
//     dispatch/wire against a plain restatement of the gate table, in
//     both directions.
//   - baseline_test.go does nothing with the dispatch target's inputs:
//     the reference that target's speed is measured against (make
//     fuzz-rate).
//
// The other targets live in packages of their own under fuzz/, so that
// what they link (gofuzz's reflection, testify, the VMM) is not
// coverage-instrumented in this package's binary: the engine checks
// every instrumented counter on every execution, and that cost, not the
// dispatch target's own, bounds its speed (docs/fuzzing.md). For the
// same reason this package uses no assertion library.
//
//   - fuzz/frames: frame sequences built with github.com/google/gofuzz.
//   - fuzz/trace: arbitrary trace files.
//   - fuzz/vmm: the native VMM's virtqueue parser and console device
//     model.
//
// Every target but the baseline also builds with go-118-fuzz-build into
// a libFuzzer binary (.clusterfuzzlite/build.sh, make libfuzzer). That
// tool compiles the harness file alone, with its own testing package,
// whose F and T are not testing.TB: so a harness keeps what it calls in
// non-test packages or in its own file, passes no f or t on as a
// testing.TB (fuzz/internal/seeds returns errors instead), and calls
// libfuzzer.Exporter's function (internal/libfuzzer) first, which is
// how its seeds reach libFuzzer. And a target's function name appears in one .go file under
// its package's directory, its harness: the base image finds the
// harness with grep -r and its coverage build copies the one file.
//
// Each target's oracle has a plain Test… beside it that shows it fails
// on a known-bad input. The package has no API: it is its tests. `go
// test ./fuzz/...` runs every target over its seed corpus (corpus.Seeds,
// the checked-in traces under corpus/, and testdata/fuzz/) as ordinary
// tests; KTSTR_FUZZ_NOSEEDS=1 leaves out the f.Add seeds of every
// target but the three VMM ones, so a run can start from nothing. `make fuzz`
// fuzzes the targets in turn and `make fuzz-brokengate` shows a target
// finding the deliberately broken gate of the ktstr_brokengate build.
// docs/fuzzing.md describes the input formats, how the corpus is
// exported from traces, and how to run them.
package fuzz
