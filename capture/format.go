// Package capture is the ktstr trace format: a crash-safe zstd Writer
// and a bounded, streaming Reader.
//
// It sits at the tap of the data flow (bytes → tap → Assembler → Dispatch
// → Sinks → Outcome). In a live run the coordinator copies every
// delivery of the bulk port into a [Writer] before feeding it to the
// Assembler, together with coordinator events and, at the end, the live
// Outcome. Replay reads the same deliveries back with a [Reader] and
// feeds them to the identical Assembler and Dispatch.
//
// A trace is a sequence of standard zstd frames (zstdcat decodes it).
// The decompressed stream holds a header (magic, version, JSON [Meta])
// followed by records; each record is a kind byte, a little-endian u32
// body length and the body, so a reader skips kinds it does not know.
// The byte layout is specified in docs/trace-format.md.
//
// The Writer closes a zstd frame at every event and END record and at
// least every [FlushInterval] while data is pending, and writes each
// frame straight through to its destination, so a recorder killed at any
// moment leaves a prefix that the Reader reads up to the last complete
// zstd block, reporting [ErrTruncated] after it.
//
// The package does not import dispatch: the live outcome travels as raw
// JSON ([End.Outcome]).
package capture

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Magic is the first 8 bytes of the decompressed stream of every trace.
const Magic = "KTSTRTRC"

// Version is the trace format version this package writes and reads.
const Version = 1

// Bounds on declared lengths. A reader rejects a trace declaring more
// with [ErrCorrupt]; a writer refuses to write more.
const (
	// MaxMetaSize bounds the JSON metadata block.
	MaxMetaSize = 1 << 20
	// MaxRecordSize bounds the body of any record, known kind or not.
	MaxRecordSize = 16 << 20
	// MaxDataSize is the largest delivery a DATA record can carry:
	// MaxRecordSize less the DATA record's fixed fields.
	MaxDataSize = MaxRecordSize - dataFixed
	// MaxOutcomeEntries bounds every list in an END record's outcome:
	// the most entries a live outcome's longest list holds (the verdict
	// bucket, dispatch.MaxVerdicts). A reader that decodes the outcome
	// then holds at most that many entries, whatever the trace says.
	MaxOutcomeEntries = 1 << 16
)

// Zstd window sizes. The writer compresses with WriterWindow; the reader
// refuses frames declaring a window larger than MaxWindow (zstd's own
// maximum for its high levels, so traces recompressed with the zstd
// command line up to level 19 still read). 512 KiB, not the 1 MiB it
// was: the encoder wrote the throughput scenario's traffic 1.4 times as
// fast and the mixed benchmark traffic 1.2 times (BenchmarkWriter*,
// interleaved, medians of 4), with the same trace size for the one and
// 0.03% less for the other; 256 and 128 KiB were no faster.
const (
	WriterWindow = 512 << 10
	MaxWindow    = 8 << 20
)

// FlushInterval is the longest time the Writer keeps written records in
// an open zstd frame.
const FlushInterval = 250 * time.Millisecond

// FrameSize is how many decompressed bytes the Writer puts in a zstd
// frame before it closes the frame, after the record that reaches it.
// Small independent frames let a Reader decode several at once
// (WithDecoders); the benchmark's 64 MiB trace compressed to 23.40 MB in
// 2 MiB frames against 23.51 MB in one frame per FlushInterval.
const FrameSize = 2 << 20

// BulkPort is the virtio-console port number of the bulk port, the port
// whose TX stream ktstr records and replays.
const BulkPort uint16 = 1

// Sizes of the fixed parts of the format.
const (
	headerFixed = len(Magic) + 4 + 4 // magic, version u32, meta length u32
	recordHead  = 1 + 4              // kind u8, body length u32
	dataFixed   = 1 + 2 + 8          // direction u8, port u16, time i64
	eventFixed  = 8 + 2              // time i64, name length u16
	endFixed    = 8 + 4 + 2          // time i64, exit status i32, reason length u16
)

// Errors reported by the Reader. Every error a Reader returns, other than
// io.EOF at the clean end of a trace, wraps exactly one of them.
var (
	// ErrCorrupt: the trace is damaged or is not a ktstr trace.
	ErrCorrupt = errors.New("corrupt trace")
	// ErrTruncated: the trace ends inside a record or a zstd frame, as
	// one left by a recorder that was killed. The records before the
	// cut were all returned.
	ErrTruncated = errors.New("truncated trace")
	// ErrVersion: the trace was written in a format version this
	// package does not read.
	ErrVersion = errors.New("unsupported trace version")
)

// Errors reported by the Writer.
var (
	// ErrTooLarge: a record or the metadata exceeds the format's bounds.
	ErrTooLarge = errors.New("too large for a trace record")
	// ErrClosed: the Writer was used after Close or after WriteEnd.
	ErrClosed = errors.New("trace writer closed")
)

// Kind is the type of a record.
type Kind uint8

// Record kinds. Kind 0 is reserved and invalid; a reader skips any other
// kind it does not know.
const (
	KindData  Kind = 1 // one delivery of bytes on a port
	KindEvent Kind = 2 // a coordinator event
	KindEnd   Kind = 3 // the end of the run and its live outcome
)

// String returns "data", "event", "end" or "kind(N)".
func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindEvent:
		return "event"
	case KindEnd:
		return "end"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Direction says which way a delivery travelled.
type Direction uint8

// Directions. Zero is invalid.
const (
	TX Direction = 1 // guest → host
	RX Direction = 2 // host → guest
)

// String returns "tx", "rx" or "dir(N)".
func (d Direction) String() string {
	switch d {
	case TX:
		return "tx"
	case RX:
		return "rx"
	}
	return "dir(" + strconv.Itoa(int(d)) + ")"
}

// Meta describes the run a trace came from. It is stored as a JSON
// object; readers ignore fields they do not know and leave absent ones
// zero.
type Meta struct {
	ToolVersion   string            `json:"tool_version,omitempty"`   // ktstr version that wrote the trace
	KernelPath    string            `json:"kernel_path,omitempty"`    // bzImage booted
	KernelRelease string            `json:"kernel_release,omitempty"` // its release string (uname -r)
	KernelSHA256  string            `json:"kernel_sha256,omitempty"`  // lower-case hex SHA-256 of the image
	Backend       string            `json:"backend,omitempty"`        // "qemu", "native", "import"
	Accel         string            `json:"accel,omitempty"`          // "kvm", "tcg"
	CPUs          int               `json:"cpus,omitempty"`           // guest vCPUs
	MemoryMiB     int               `json:"memory_mib,omitempty"`     // guest memory
	Scenario      string            `json:"scenario,omitempty"`       // scenario name
	CommandLine   []string          `json:"command_line,omitempty"`   // the recorder's argv
	StartTime     time.Time         `json:"start_time,omitzero"`      // wall clock at run start (timestamps count from here)
	Extra         map[string]string `json:"extra,omitempty"`          // anything else
}

// End is the END record: why and how the run ended, and the outcome the
// live dispatch produced.
type End struct {
	// TimeNS is the run-clock time the run ended, in ns since run start.
	TimeNS int64
	// ExitStatus is the recorder's exit status (0 ok, 1 a check failed,
	// 2 bad input, 3 environment).
	ExitStatus int32
	// Reason says why the run ended, e.g. "sched_exit", "poweroff",
	// "watchdog", "signal".
	Reason string
	// Outcome is the live outcome as JSON (docs/protocol.md); empty when
	// the run produced none.
	Outcome json.RawMessage
}

// Record is one record read from a trace. Which fields are set depends
// on Kind. Slices point into the Reader's buffer and are valid until the
// next call to Next.
type Record struct {
	Kind   Kind
	TimeNS int64 // run-clock time in ns since run start (all kinds)

	Dir  Direction // KindData
	Port uint16    // KindData
	Data []byte    // KindData: the exact bytes of one delivery

	Name   string          // KindEvent: e.g. "sys_rdy", "snapshot", "vm-exit"
	Detail json.RawMessage // KindEvent: JSON detail, empty if none

	End *End // KindEnd (a fresh value the caller may keep)
}
