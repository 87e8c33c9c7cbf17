// Package fuzz holds the native Go fuzz targets of the dispatch core and
// of the trace reader in front of it.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) the fuzzer stands in for the tap: it makes up the bytes, and
// every target drives the production code from there on. FuzzDispatch
// runs each input through replay.CheckStream (invariants 1–8 and 10 of
// ARCHITECTURE §5); FuzzAssembler compares two splittings of one stream
// frame by frame (invariant 6); FuzzFrames builds frame sequences with
// github.com/google/gofuzz; FuzzTraceReader feeds arbitrary trace files
// to capture.Reader and replay.Trace; FuzzPayloads checks the fixed
// payload codecs of dispatch/wire.
//
// The package has no API: it is its tests. `go test ./fuzz` runs every
// target over its seed corpus (corpus.Seeds, the checked-in traces under
// corpus/, and testdata/fuzz/) as ordinary tests; `make fuzz` fuzzes
// them in turn. docs/fuzzing.md describes the input formats, how the
// corpus is exported from traces, and the measured figures.
package fuzz
