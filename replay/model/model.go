// Package model is the independent reference model of the host's frame
// assembler and gate evaluator (docs/protocol.md, invariant 10).
//
// The production data flow is bytes → tap → Assembler → Dispatch → Sinks
// → Outcome. This package is a second path from the same bytes to the
// same Outcome: it holds the whole TX stream in one []byte, walks it one
// position at a time, and applies the gate table directly. It shares no
// code with package dispatch and uses package wire only for its
// constants (tag values, header and payload sizes); header parsing,
// payload checks and the CRC are written out here. The replayer runs
// every stream through both paths and reports a violation when their
// outcomes differ.
//
// The model favours being obviously correct over being fast: it keeps no
// buffers besides the input and the outcome it builds (and one running
// SHA-256 over the verdicts dropped past the budget).
package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"hash/crc32"
	"math"
	"math/big"
	"sort"
	"unicode/utf8"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// MaxQueued is how many SNRQ frames, and separately how many KORQ
// frames, are accepted per run; later intact, well-shaped ones are
// rejected as overflow.
const MaxQueued = 64

// MaxVerdicts is how many verdict entries are kept per run. An accepted
// verdict frame past it still has its row's effect but keeps no entry:
// it is counted in Outcome.VerdictsDropped and folded into
// Outcome.VerdictsDroppedSHA256 (docs/protocol.md).
const MaxVerdicts = 65536

// emptySHA256 is the lower-case hex SHA-256 of no bytes: the
// verdicts_dropped_sha256 of a run that drops nothing.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Reject reason names, as they appear in Frame.Verdict and as the keys of
// the "rejected" object of docs/protocol.md.
const (
	ReasonCRC           = "crc"
	ReasonPad           = "pad"
	ReasonUnknownTag    = "unknown_tag"
	ReasonForgedTag     = "forged_tag"
	ReasonShape         = "shape"
	ReasonOneshotRepeat = "oneshot_repeat"
	ReasonOverflow      = "overflow"
	ReasonOutOfOrder    = "out_of_order"
)

// Frame is one complete frame the model framed, intact or torn.
type Frame struct {
	Offset  int64  // stream offset of the header's first byte
	Time    int64  // run-clock ns of the delivery holding the frame's last byte
	Tag     uint32 // tag field as read from the header
	Len     uint32 // payload length as read from the header
	CRCOK   bool   // crc field equals the CRC-32/IEEE of the payload
	PadOK   bool   // pad field is zero
	Verdict string // "" when the gate accepted the frame, else a Reason* name
}

// Result is what Evaluate returns.
type Result struct {
	Frames     []Frame // every complete frame, in stream order
	Outcome    Outcome // the outcome the gates produced
	Bytes      int64   // length of the stream given
	FrameCount int64   // len(Frames)

	// ScenarioStarts holds the run-clock time of every accepted SCST, at
	// which the watchdog was re-armed. It is internal state that the
	// JSON outcome does not carry.
	ScenarioStarts []int64
}

// Outcome is the "outcome" object of docs/protocol.md. It marshals to
// exactly that JSON: the same field names in the same order, kaslr null
// until set, and empty arrays (never null) for the three lists.
//
// VerdictsDropped counts the accepted verdict frames past MaxVerdicts;
// VerdictsDroppedSHA256 is the lower-case hex SHA-256 of the
// concatenation, per dropped verdict in stream order, of its tag (u32
// LE), its len (u32 LE) and its payload. Evaluate always sets it (the
// SHA-256 of no bytes when nothing was dropped).
type Outcome struct {
	Killed                bool              `json:"killed"`
	KillSignals           uint64            `json:"kill_signals"`
	SysRdy                bool              `json:"sys_rdy"`
	SnapshotRequests      []SnapshotRequest `json:"snapshot_requests"`
	KernelOps             []KernelOp        `json:"kernel_ops"`
	KASLR                 *KASLR            `json:"kaslr"`
	Step                  uint16            `json:"step"`
	WatchdogPauses        uint64            `json:"watchdog_pauses"`
	WatchdogPauseNs       int64             `json:"watchdog_pause_ns"`
	Verdicts              []Verdict         `json:"verdicts"`
	VerdictsDropped       uint64            `json:"verdicts_dropped"`
	VerdictsDroppedSHA256 string            `json:"verdicts_dropped_sha256"`
	Rejected              Rejected          `json:"rejected"`
}

// MarshalJSON encodes o as in docs/protocol.md, writing nil lists as []
// and, when nothing was dropped, an empty VerdictsDroppedSHA256 as the
// SHA-256 of no bytes (so the zero Outcome marshals like the outcome of
// an empty stream).
func (o Outcome) MarshalJSON() ([]byte, error) {
	type plain Outcome // same fields, no MarshalJSON method
	p := plain(o)
	if p.SnapshotRequests == nil {
		p.SnapshotRequests = []SnapshotRequest{}
	}
	if p.KernelOps == nil {
		p.KernelOps = []KernelOp{}
	}
	if p.Verdicts == nil {
		p.Verdicts = []Verdict{}
	}
	if p.VerdictsDroppedSHA256 == "" && p.VerdictsDropped == 0 {
		p.VerdictsDroppedSHA256 = emptySHA256
	}
	return json.Marshal(p)
}

// SnapshotRequest is an accepted SNRQ.
type SnapshotRequest struct {
	ID   uint32 `json:"id"`
	Kind uint32 `json:"kind"`
	Tag  string `json:"tag"` // text of the tag field before its first NUL
}

// KernelOp is an accepted KORQ.
type KernelOp struct {
	ID   uint32 `json:"id"`
	Op   uint32 `json:"op"`
	Arg  uint64 `json:"arg"`
	Arg2 uint64 `json:"arg2"`
}

// KASLR holds the addresses of the accepted KADR, without the +1.
type KASLR struct {
	PhysBase       uint64 `json:"phys_base"`
	PageOffsetBase uint64 `json:"page_offset_base"`
	TextAddr       uint64 `json:"text_addr"`
}

// Verdict is one bucketed verdict frame.
type Verdict struct {
	Tag    string `json:"tag"`    // the four tag characters
	Len    uint32 `json:"len"`    // payload length
	SHA256 string `json:"sha256"` // lower-case hex SHA-256 of the payload
}

// Rejected counts frames per reject reason and the framing counters.
type Rejected struct {
	CRC                uint64 `json:"crc"`
	Pad                uint64 `json:"pad"`
	UnknownTag         uint64 `json:"unknown_tag"`
	ForgedTag          uint64 `json:"forged_tag"`
	Shape              uint64 `json:"shape"`
	OneshotRepeat      uint64 `json:"oneshot_repeat"`
	Overflow           uint64 `json:"overflow"`
	OutOfOrder         uint64 `json:"out_of_order"`
	Oversize           uint64 `json:"oversize"`
	ResyncBytes        uint64 `json:"resync_bytes"`
	TruncatedTailBytes uint64 `json:"truncated_tail_bytes"`
}

// count adds one to the counter of reason.
func (r *Rejected) count(reason string) {
	switch reason {
	case ReasonCRC:
		r.CRC++
	case ReasonPad:
		r.Pad++
	case ReasonUnknownTag:
		r.UnknownTag++
	case ReasonForgedTag:
		r.ForgedTag++
	case ReasonShape:
		r.Shape++
	case ReasonOneshotRepeat:
		r.OneshotRepeat++
	case ReasonOverflow:
		r.Overflow++
	case ReasonOutOfOrder:
		r.OutOfOrder++
	}
}

// Evaluate runs the whole TX stream through the model.
//
// starts and times describe the deliveries the stream arrived in:
// delivery i begins at byte offset starts[i] (non-decreasing) and was
// received at run-clock time times[i] (ns). A frame completes, and is
// judged, when its last byte arrives, so its time-stamped effects take
// the time of the delivery holding that byte: the last i with
// starts[i] ≤ that byte's offset. Bytes before starts[0] take time 0, and
// entries beyond the shorter of the two slices are ignored. Pass nil for
// both to put everything at time 0.
func Evaluate(stream []byte, starts []int64, times []int64) Result {
	res := Result{Bytes: int64(len(stream))}
	st := newState()
	n := len(stream)
	pos := 0
	resyncing := false
	for pos < n {
		if n-pos < wire.HeaderSize {
			// A header not yet complete, or bytes a resync could not judge.
			st.out.Rejected.TruncatedTailBytes += uint64(n - pos)
			break
		}
		tag := binary.LittleEndian.Uint32(stream[pos:])
		length := binary.LittleEndian.Uint32(stream[pos+4:])
		crc := binary.LittleEndian.Uint32(stream[pos+8:])
		pad := binary.LittleEndian.Uint32(stream[pos+12:])

		if resyncing {
			plausible := classOf(tag) != classUnknown && length <= wire.MaxPayload && pad == 0
			if !plausible {
				st.out.Rejected.ResyncBytes++
				pos++
				continue
			}
			resyncing = false
		}
		if length > wire.MaxPayload {
			// resync_bytes counts every byte dropped from here, the
			// oversize header's first byte, up to the next plausible
			// header, which may start inside this one (fewer than 16).
			st.out.Rejected.Oversize++
			st.out.Rejected.ResyncBytes++ // the header's first byte
			resyncing = true
			pos++
			continue
		}
		end := pos + wire.HeaderSize + int(length)
		if end > n {
			st.out.Rejected.TruncatedTailBytes += uint64(n - pos)
			break
		}
		payload := stream[pos+wire.HeaderSize : end]
		f := Frame{
			Offset: int64(pos),
			Time:   timeAt(starts, times, int64(end-1)),
			Tag:    tag,
			Len:    length,
			CRCOK:  crc32.ChecksumIEEE(payload) == crc,
			PadOK:  pad == 0,
		}
		f.Verdict = st.judge(f, payload)
		st.out.Rejected.count(f.Verdict)
		res.Frames = append(res.Frames, f)
		pos = end
	}
	st.out.VerdictsDroppedSHA256 = hex.EncodeToString(st.dropped.Sum(nil))
	res.Outcome = st.out
	res.ScenarioStarts = st.scenarioStarts
	res.FrameCount = int64(len(res.Frames))
	return res
}

// timeAt returns the time of the delivery holding byte offset pos.
func timeAt(starts, times []int64, pos int64) int64 {
	n := min(len(starts), len(times))
	i := sort.Search(n, func(i int) bool { return starts[i] > pos }) - 1
	if i < 0 {
		return 0
	}
	return times[i]
}

// class is how the gate table treats a tag.
type class int

const (
	classUnknown     class = iota // not in the table
	classInternal                 // steers the host, never bucketed
	classVerdict                  // bucketed
	classHostToGuest              // forged when seen on TX
)

// classOf looks tag up in the gate table of docs/protocol.md.
func classOf(tag uint32) class {
	switch tag {
	case uint32(wire.SysRdy), uint32(wire.SnapshotRequest), uint32(wire.KernelOpRequest),
		uint32(wire.KernelAddrs), uint32(wire.WatchdogPause), uint32(wire.WatchdogResume),
		uint32(wire.Step):
		return classInternal
	case uint32(wire.SchedExit), uint32(wire.ScenarioStart), uint32(wire.Lifecycle),
		uint32(wire.Scenario), uint32(wire.Stimulus), uint32(wire.StepEnd),
		uint32(wire.Exit), uint32(wire.TestResult), uint32(wire.Crash),
		uint32(wire.Stdout), uint32(wire.Stderr), uint32(wire.SchedLog),
		uint32(wire.PerfMetrics), uint32(wire.RawOutput), uint32(wire.ProbeRaw),
		uint32(wire.Dmesg), uint32(wire.ExitContext), uint32(wire.Probe),
		uint32(wire.GuestProfile):
		return classVerdict
	case uint32(wire.SnapshotReply), uint32(wire.KernelOpReply):
		return classHostToGuest
	}
	return classUnknown
}

// state is the gate evaluator's memory across frames.
type state struct {
	out            Outcome
	paused         bool      // watchdog paused by an accepted SCPP
	pausedAt       int64     // run-clock time of that SCPP
	scenarioStarts []int64   // run-clock times of the accepted SCSTs
	dropped        hash.Hash // running SHA-256 of the verdicts past MaxVerdicts
}

func newState() *state {
	return &state{
		out: Outcome{
			SnapshotRequests: []SnapshotRequest{},
			KernelOps:        []KernelOp{},
			Verdicts:         []Verdict{},
		},
		dropped: sha256.New(),
	}
}

// judge applies the gate table to one complete frame and, if it is
// accepted, its effect. It returns the reject reason, or "" if accepted.
// The checks run in the order of docs/protocol.md: crc, pad, tag, shape,
// then the stateful gates.
func (s *state) judge(f Frame, p []byte) string {
	if !f.CRCOK {
		return ReasonCRC
	}
	if !f.PadOK {
		return ReasonPad
	}
	switch classOf(f.Tag) {
	case classUnknown:
		return ReasonUnknownTag
	case classHostToGuest:
		return ReasonForgedTag
	}
	now := f.Time

	switch f.Tag {
	case uint32(wire.SysRdy):
		if len(p) != 0 {
			return ReasonShape
		}
		if s.out.SysRdy {
			return ReasonOneshotRepeat
		}
		s.out.SysRdy = true

	case uint32(wire.SnapshotRequest):
		if len(p) != wire.SnapshotRequestSize {
			return ReasonShape
		}
		kind := binary.LittleEndian.Uint32(p[4:])
		if kind != wire.SnapshotCapture && kind != wire.SnapshotWatch {
			return ReasonShape
		}
		field := p[8:wire.SnapshotRequestSize]
		text := field
		if i := bytes.IndexByte(field, 0); i >= 0 {
			text = field[:i]
		}
		if !utf8.Valid(text) {
			return ReasonShape
		}
		for _, b := range field[len(text):] {
			if b != 0 {
				return ReasonShape
			}
		}
		if len(s.out.SnapshotRequests) >= MaxQueued {
			return ReasonOverflow
		}
		s.out.SnapshotRequests = append(s.out.SnapshotRequests, SnapshotRequest{
			ID:   binary.LittleEndian.Uint32(p[0:]),
			Kind: kind,
			Tag:  string(text),
		})

	case uint32(wire.KernelOpRequest):
		if len(p) != wire.KernelOpRequestSize {
			return ReasonShape
		}
		if len(s.out.KernelOps) >= MaxQueued {
			return ReasonOverflow
		}
		s.out.KernelOps = append(s.out.KernelOps, KernelOp{
			ID:   binary.LittleEndian.Uint32(p[0:]),
			Op:   binary.LittleEndian.Uint32(p[4:]),
			Arg:  binary.LittleEndian.Uint64(p[8:]),
			Arg2: binary.LittleEndian.Uint64(p[16:]),
		})

	case uint32(wire.KernelAddrs):
		if len(p) != wire.KernelAddrsSize {
			return ReasonShape
		}
		physPlus1 := binary.LittleEndian.Uint64(p[0:])
		pageOffset := binary.LittleEndian.Uint64(p[8:])
		textPlus1 := binary.LittleEndian.Uint64(p[16:])
		if physPlus1 == 0 || textPlus1 == 0 {
			return ReasonShape
		}
		if s.out.KASLR != nil {
			return ReasonOneshotRepeat
		}
		s.out.KASLR = &KASLR{PhysBase: physPlus1 - 1, PageOffsetBase: pageOffset, TextAddr: textPlus1 - 1}

	case uint32(wire.WatchdogPause):
		if len(p) != 0 {
			return ReasonShape
		}
		if s.paused {
			return ReasonOutOfOrder
		}
		s.paused = true
		s.pausedAt = now
		s.out.WatchdogPauses++

	case uint32(wire.WatchdogResume):
		if len(p) != 0 {
			return ReasonShape
		}
		if !s.paused {
			return ReasonOutOfOrder
		}
		// The clock's advance, none if it went back; the total
		// saturates at MaxInt64 (big.Int: no wrapping to reason about).
		if now > s.pausedAt {
			sum := new(big.Int).Add(big.NewInt(s.out.WatchdogPauseNs), new(big.Int).Sub(big.NewInt(now), big.NewInt(s.pausedAt)))
			if sum.IsInt64() {
				s.out.WatchdogPauseNs = sum.Int64()
			} else {
				s.out.WatchdogPauseNs = math.MaxInt64
			}
		}
		s.paused = false

	case uint32(wire.Step):
		if len(p) != wire.StepSize {
			return ReasonShape
		}
		s.out.Step = binary.LittleEndian.Uint16(p)

	case uint32(wire.SchedExit):
		s.out.Killed = true
		s.out.KillSignals++
		s.bucket(f.Tag, p)

	case uint32(wire.ScenarioStart):
		s.scenarioStarts = append(s.scenarioStarts, now)
		s.bucket(f.Tag, p)

	case uint32(wire.Lifecycle):
		if len(p) != wire.LifecycleSize || p[0] < wire.LifecycleMin || p[0] > wire.LifecycleMax {
			return ReasonShape
		}
		s.bucket(f.Tag, p)

	default: // the plain verdict tags
		s.bucket(f.Tag, p)
	}
	return ""
}

// bucket appends a verdict entry for an accepted verdict frame, or, once
// MaxVerdicts entries are kept, counts it as dropped and folds its tag
// (u32 LE), len (u32 LE) and payload into the running dropped digest.
func (s *state) bucket(tag uint32, p []byte) {
	if len(s.out.Verdicts) >= MaxVerdicts {
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[0:], tag)
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(p)))
		s.dropped.Write(hdr[:])
		s.dropped.Write(p)
		s.out.VerdictsDropped++
		return
	}
	sum := sha256.Sum256(p)
	name := string([]byte{byte(tag >> 24), byte(tag >> 16), byte(tag >> 8), byte(tag)})
	s.out.Verdicts = append(s.out.Verdicts, Verdict{
		Tag:    name,
		Len:    uint32(len(p)),
		SHA256: hex.EncodeToString(sum[:]),
	})
}
