// Package fuzz holds the native Go fuzz targets of the dispatch core and
// of the trace reader in front of it.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) the fuzzer stands in for the tap: it makes up the bytes, and
// every target drives the production code from there on.
//
//   - FuzzDispatch runs each input (a delivery table and a TX stream,
//     corpus.DecodeDispatchInput) through replay.CheckStream: invariants
//     1–8 and 10 of ARCHITECTURE §5, and 6 against a second split.
//   - FuzzAssembler frames one stream under two splittings and whole,
//     and requires the same messages and counts (invariant 6).
//   - FuzzFrames builds frame sequences with github.com/google/gofuzz
//     (chosen tags, well-formed or raw payloads, torn crc, non-zero pad,
//     truncation, oversize len, interleaving, bursts, splits), checks
//     them as FuzzDispatch does, and, where no corruption moved a frame
//     boundary, against the outcome the structure dictates.
//   - FuzzTraceReader feeds arbitrary trace files to capture.Reader and
//     replay.Trace: no panic, classified one-line errors, bounded
//     memory, and the two agree.
//   - FuzzPayloads checks the SNRQ, KORQ and KADR codecs of
//     dispatch/wire against a plain restatement of the gate table, in
//     both directions.
//   - FuzzVirtqueue and FuzzConsoleRegisters drive the native VMM's
//     virtqueue parser and console device model.
//
// Each target's oracle has a plain Test… beside it that shows it fails
// on a known-bad input. The package has no API: it is its tests. `go
// test ./fuzz` runs every target over its seed corpus (corpus.Seeds,
// the checked-in traces under corpus/, and testdata/fuzz/) as ordinary
// tests; KTSTR_FUZZ_NOSEEDS=1 leaves out the f.Add seeds of every
// target but the two VMM ones, so a run can start from nothing. `make fuzz`
// fuzzes the targets in turn and `make fuzz-brokengate` shows a target
// finding the deliberately broken gate of the ktstr_brokengate build.
// docs/fuzzing.md describes the input formats, how the corpus is
// exported from traces, and how to run them.
package fuzz
