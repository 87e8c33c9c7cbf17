// Package frames holds the structured fuzz target of the dispatch core
// (frames_test.go).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it stands in for the tap, but builds its bytes from a
// structure github.com/google/gofuzz fills in: sequences of frames with
// chosen tags, well-formed or raw payloads, torn crc, non-zero pad,
// truncation, oversize len, interleaving, bursts and splits. Each input
// is checked as package fuzz's dispatch target checks its own
// (replay.CheckStream), and,
// where no corruption moved a frame boundary, against the outcome the
// structure dictates. It lives apart from package fuzz so that gofuzz's
// reflection is not coverage-instrumented in package fuzz's binary.
// The package has no API: it is its tests.
package frames
