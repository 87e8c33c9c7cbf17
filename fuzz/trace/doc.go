// Package trace holds the fuzz target of the trace reader that replay
// and `ktstr corpus export` read recorded runs with (reader_test.go).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) a trace is what the tap wrote; this target feeds arbitrary
// trace files to capture.Reader and replay.Trace and requires no panic,
// classified one-line errors, bounded memory, and that the two agree.
// It lives apart from package fuzz so that zstd and the trace code are
// not coverage-instrumented in package fuzz's binary. The package has
// no API: it is its tests.
package trace
