// Package fuzz holds the native Go fuzz targets of the dispatch core.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) the fuzzer stands in for the tap: it makes up the bytes, and
// every target drives the production code from there on.
//
//   - FuzzDispatch runs each input (a delivery table and a TX stream,
//     corpus.DecodeDispatchInput) through replay.CheckStream: invariants
//     1–8 and 10 of docs/protocol.md, and 6 against a second split.
//   - FuzzAssembler frames one stream under two splittings and whole,
//     and requires the same messages and counts (invariant 6).
//   - FuzzPayloads checks the SNRQ, KORQ and KADR codecs of
//     dispatch/wire against a plain restatement of the gate table, in
//     both directions.
//   - FuzzBaseline does nothing with the same inputs: the reference
//     FuzzDispatch's speed is measured against (make fuzz-rate).
//
// The other targets live in packages of their own under fuzz/, so that
// what they link (gofuzz's reflection, testify, the VMM) is not
// coverage-instrumented in this package's binary: the engine checks
// every instrumented counter on every execution, and that cost, not
// FuzzDispatch's own, bounds its speed (docs/fuzzing.md). For the same
// reason this package uses no assertion library.
//
//   - fuzz/frames: FuzzFrames, frame sequences built with
//     github.com/google/gofuzz.
//   - fuzz/trace: FuzzTraceReader, arbitrary trace files.
//   - fuzz/vmm: FuzzVirtqueue and FuzzConsoleRegisters, the native
//     VMM's virtqueue parser and console device model.
//
// Each target's oracle has a plain Test… beside it that shows it fails
// on a known-bad input. The package has no API: it is its tests. `go
// test ./fuzz/...` runs every target over its seed corpus (corpus.Seeds,
// the checked-in traces under corpus/, and testdata/fuzz/) as ordinary
// tests; KTSTR_FUZZ_NOSEEDS=1 leaves out the f.Add seeds of every
// target but the two VMM ones, so a run can start from nothing. `make fuzz`
// fuzzes the targets in turn and `make fuzz-brokengate` shows a target
// finding the deliberately broken gate of the ktstr_brokengate build.
// docs/fuzzing.md describes the input formats, how the corpus is
// exported from traces, and how to run them.
package fuzz
