// Package tracetool holds the trace tools a person uses once a run is
// recorded: the minimizer (`ktstr trace minimize`), the comparison of two
// traces (`ktstr trace diff`), the timeline in Chrome trace-event JSON
// and in one self-contained HTML page (`ktstr trace timeline`), and the
// gate-table coverage of a corpus (`ktstr corpus cover`).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it starts from the tap's recording, a trace, and feeds its
// TX bytes to a dispatch.Session, as replay does, with the recorded
// times as the clock. What it adds sits after the Outcome: it reads each
// frame's Result and the Outcome, and turns them into a smaller trace,
// a report or a picture. It judges no frame itself.
//
// Every reader here streams its trace (Reader) or holds it up to a
// stated bound (the minimizer's input), so that each command stays under
// the 64 MiB of RSS that docs/protocol.md promises for readers of
// traces. The algorithms and encodings are in docs/trace-tools.md.
package tracetool
