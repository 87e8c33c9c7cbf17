package dispatch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// Outcome is everything a run's frames did, in the JSON form of
// docs/protocol.md. Live runs store it in the trace's END record; replay
// recomputes it and compares.
type Outcome struct {
	Killed           bool              `json:"killed"`
	KillSignals      uint64            `json:"kill_signals"`
	SysRdy           bool              `json:"sys_rdy"`
	SnapshotRequests []SnapshotRequest `json:"snapshot_requests"`
	KernelOps        []KernelOp        `json:"kernel_ops"`
	KASLR            *KASLR            `json:"kaslr"`
	Step             uint16            `json:"step"`
	WatchdogPauses   uint64            `json:"watchdog_pauses"`
	WatchdogPauseNS  int64             `json:"watchdog_pause_ns"`
	Verdicts         []Verdict         `json:"verdicts"`
	// VerdictsDropped counts accepted verdicts past MaxVerdicts; each
	// is folded, in stream order, into VerdictsDroppedSHA256 (the
	// SHA-256 of tag u32 LE ‖ len u32 LE ‖ payload per dropped verdict),
	// so every verdict is covered by exactly one digest.
	VerdictsDropped       uint64   `json:"verdicts_dropped"`
	VerdictsDroppedSHA256 Digest   `json:"verdicts_dropped_sha256"`
	Rejected              Rejected `json:"rejected"`
}

// Digest is a SHA-256 digest; it marshals as lower-case hex.
type Digest [sha256.Size]byte

// EmptyDigest returns the SHA-256 of no bytes: the dropped-verdict
// digest of a run that dropped none.
func EmptyDigest() Digest { return sha256.Sum256(nil) }

// String returns the digest in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest as lower-case hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes 64 hex digits.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 2*sha256.Size {
		return fmt.Errorf("digest %q is not 64 hex digits", b)
	}
	if _, err := hex.Decode(d[:], b); err != nil {
		return fmt.Errorf("digest %q is not 64 hex digits", b)
	}
	return nil
}

// NewOutcome returns an empty Outcome whose lists marshal as [] and
// whose dropped-verdict digest is that of no verdicts.
func NewOutcome() Outcome {
	return Outcome{SnapshotRequests: []SnapshotRequest{}, KernelOps: []KernelOp{}, Verdicts: []Verdict{},
		VerdictsDroppedSHA256: EmptyDigest()}
}

// SnapshotRequest is an accepted SNRQ.
type SnapshotRequest struct {
	ID   uint32 `json:"id"`
	Kind uint32 `json:"kind"`
	Tag  string `json:"tag"` // the tag text before the first NUL
}

// KernelOp is an accepted KORQ.
type KernelOp struct {
	ID   uint32 `json:"id"`
	Op   uint32 `json:"op"`
	Arg  uint64 `json:"arg"`
	Arg2 uint64 `json:"arg2"`
}

// KASLR holds the kernel addresses of the accepted KADR, without the +1.
type KASLR struct {
	PhysBase       uint64 `json:"phys_base"`
	PageOffsetBase uint64 `json:"page_offset_base"`
	TextAddr       uint64 `json:"text_addr"`
}

// Rejected counts rejected frames by reason, and the Assembler's own
// stream counters.
type Rejected struct {
	CRC                uint64 `json:"crc"`
	Pad                uint64 `json:"pad"`
	UnknownTag         uint64 `json:"unknown_tag"`
	ForgedTag          uint64 `json:"forged_tag"`
	Shape              uint64 `json:"shape"`
	OneshotRepeat      uint64 `json:"oneshot_repeat"`
	Overflow           uint64 `json:"overflow"`
	OutOfOrder         uint64 `json:"out_of_order"`
	Oversize           int64  `json:"oversize"`
	ResyncBytes        int64  `json:"resync_bytes"`
	TruncatedTailBytes int64  `json:"truncated_tail_bytes"`
}

// Count returns the counter for reason r.
func (r *Rejected) Count(reason Reason) uint64 {
	switch reason {
	case RejectCRC:
		return r.CRC
	case RejectPad:
		return r.Pad
	case RejectUnknownTag:
		return r.UnknownTag
	case RejectForgedTag:
		return r.ForgedTag
	case RejectShape:
		return r.Shape
	case RejectOneshotRepeat:
		return r.OneshotRepeat
	case RejectOverflow:
		return r.Overflow
	case RejectOutOfOrder:
		return r.OutOfOrder
	}
	return 0
}

func (r *Rejected) add(reason Reason) {
	switch reason {
	case RejectCRC:
		r.CRC++
	case RejectPad:
		r.Pad++
	case RejectUnknownTag:
		r.UnknownTag++
	case RejectForgedTag:
		r.ForgedTag++
	case RejectShape:
		r.Shape++
	case RejectOneshotRepeat:
		r.OneshotRepeat++
	case RejectOverflow:
		r.Overflow++
	case RejectOutOfOrder:
		r.OutOfOrder++
	}
}

// SetStreamStats copies the Assembler's stream counters into o.
func (o *Outcome) SetStreamStats(st Stats) {
	o.Rejected.Oversize = st.Oversize
	o.Rejected.ResyncBytes = st.ResyncBytes
	o.Rejected.TruncatedTailBytes = st.TruncatedTailBytes
}

// Verdict is one bucketed verdict frame: its tag, its length and the
// SHA-256 of its payload. The payload itself is never kept: a guest
// chooses its size, the host does not hold it.
type Verdict struct {
	Tag    wire.Tag
	Len    int
	SHA256 Digest
}

// NewVerdict returns the entry for payload under tag.
func NewVerdict(tag wire.Tag, payload []byte) Verdict {
	return Verdict{Tag: tag, Len: len(payload), SHA256: sha256.Sum256(payload)}
}

type verdictJSON struct {
	Tag    string `json:"tag"`
	Len    int    `json:"len"`
	SHA256 Digest `json:"sha256"`
}

// MarshalJSON encodes {"tag", "len", "sha256"}.
func (v Verdict) MarshalJSON() ([]byte, error) {
	return json.Marshal(verdictJSON{Tag: v.Tag.String(), Len: v.Len, SHA256: v.SHA256})
}

// UnmarshalJSON decodes {"tag", "len", "sha256"}.
func (v *Verdict) UnmarshalJSON(b []byte) error {
	var j verdictJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("verdict: %w", err)
	}
	tag, ok := wire.ParseTag(j.Tag)
	if !ok {
		return fmt.Errorf("verdict tag %q is not four characters", j.Tag)
	}
	if j.Len < 0 || j.Len > wire.MaxPayload {
		return fmt.Errorf("verdict len %d is out of range", j.Len)
	}
	*v = Verdict{Tag: tag, Len: j.Len, SHA256: j.SHA256}
	return nil
}

// MarshalJSON encodes o as in docs/protocol.md; empty lists encode as [].
func (o Outcome) MarshalJSON() ([]byte, error) {
	type plain Outcome
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
	return json.Marshal(p)
}

// UnmarshalJSON decodes o. An outcome written before the verdict budget
// existed has no verdicts_dropped_sha256; it dropped nothing, so it
// reads as EmptyDigest.
func (o *Outcome) UnmarshalJSON(b []byte) error {
	type plain Outcome
	p := plain(NewOutcome())
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*o = Outcome(p)
	return nil
}

// Equal reports whether o and want are the same outcome, as Diff does. Unlike Diff it
// allocates nothing, so a fuzz target can call it on every input.
func (o *Outcome) Equal(want *Outcome) bool {
	if o.Killed != want.Killed || o.KillSignals != want.KillSignals || o.SysRdy != want.SysRdy ||
		o.Step != want.Step || o.WatchdogPauses != want.WatchdogPauses ||
		o.WatchdogPauseNS != want.WatchdogPauseNS || o.Rejected != want.Rejected ||
		!slices.Equal(o.SnapshotRequests, want.SnapshotRequests) || !slices.Equal(o.KernelOps, want.KernelOps) ||
		(o.KASLR == nil) != (want.KASLR == nil) || o.KASLR != nil && *o.KASLR != *want.KASLR ||
		o.VerdictsDropped != want.VerdictsDropped || o.VerdictsDroppedSHA256 != want.VerdictsDroppedSHA256 {
		return false
	}
	return slices.Equal(o.Verdicts, want.Verdicts)
}

// Diff lists, one line each, how o differs from want; nil means equal.
func (o *Outcome) Diff(want *Outcome) []string {
	var d []string
	f := func(name string, got, exp any) {
		if got != exp {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", name, got, exp))
		}
	}
	f("killed", o.Killed, want.Killed)
	f("kill_signals", o.KillSignals, want.KillSignals)
	f("sys_rdy", o.SysRdy, want.SysRdy)
	f("snapshot_requests count", len(o.SnapshotRequests), len(want.SnapshotRequests))
	for i := range min(len(o.SnapshotRequests), len(want.SnapshotRequests)) {
		f(fmt.Sprintf("snapshot_requests[%d]", i), o.SnapshotRequests[i], want.SnapshotRequests[i])
	}
	f("kernel_ops count", len(o.KernelOps), len(want.KernelOps))
	for i := range min(len(o.KernelOps), len(want.KernelOps)) {
		f(fmt.Sprintf("kernel_ops[%d]", i), o.KernelOps[i], want.KernelOps[i])
	}
	switch {
	case o.KASLR == nil && want.KASLR == nil:
	case o.KASLR == nil || want.KASLR == nil:
		d = append(d, fmt.Sprintf("kaslr: got %v, want %v", o.KASLR, want.KASLR))
	default:
		f("kaslr", *o.KASLR, *want.KASLR)
	}
	f("step", o.Step, want.Step)
	f("watchdog_pauses", o.WatchdogPauses, want.WatchdogPauses)
	f("watchdog_pause_ns", o.WatchdogPauseNS, want.WatchdogPauseNS)
	f("verdicts count", len(o.Verdicts), len(want.Verdicts))
	for i := range min(len(o.Verdicts), len(want.Verdicts)) {
		if g, w := o.Verdicts[i], want.Verdicts[i]; g != w {
			d = append(d, fmt.Sprintf("verdicts[%d]: got %s/%d bytes/%.12s, want %s/%d bytes/%.12s", i, g.Tag, g.Len, g.SHA256, w.Tag, w.Len, w.SHA256))
		}
	}
	f("verdicts_dropped", o.VerdictsDropped, want.VerdictsDropped)
	f("verdicts_dropped_sha256", o.VerdictsDroppedSHA256, want.VerdictsDroppedSHA256)
	f("rejected", o.Rejected, want.Rejected)
	return d
}
