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
// ARCHITECTURE §4. Live runs store it in the trace's END record; replay
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
	Rejected         Rejected          `json:"rejected"`
}

// NewOutcome returns an empty Outcome whose lists marshal as [].
func NewOutcome() Outcome {
	return Outcome{SnapshotRequests: []SnapshotRequest{}, KernelOps: []KernelOp{}, Verdicts: []Verdict{}}
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

// Verdict is one bucketed verdict frame. Payload holds a copy of the
// frame's payload unless the Sinks were DigestOnly; then only the
// digest is kept, computed at once, and Payload is nil. The entry holds
// its digest inline so a long replay keeps one small allocation-free
// record per verdict.
type Verdict struct {
	Tag     wire.Tag
	Len     int
	Payload []byte // nil when only the digest was kept
	sum     [sha256.Size]byte
}

// NewVerdict returns an entry for payload under tag, keeping a copy of
// the payload (keep) or only its digest.
func NewVerdict(tag wire.Tag, payload []byte, keep bool) Verdict {
	v := Verdict{Tag: tag, Len: len(payload)}
	if keep {
		v.Payload = append([]byte{}, payload...) // never nil: nil marks digest-only
	} else {
		v.sum = sha256.Sum256(payload)
	}
	return v
}

// Sum returns the SHA-256 of the verdict's payload.
func (v *Verdict) Sum() [sha256.Size]byte {
	if v.Payload != nil {
		return sha256.Sum256(v.Payload)
	}
	return v.sum
}

type verdictJSON struct {
	Tag    string `json:"tag"`
	Len    int    `json:"len"`
	SHA256 string `json:"sha256"`
}

// MarshalJSON encodes {"tag", "len", "sha256"}.
func (v Verdict) MarshalJSON() ([]byte, error) {
	sum := v.Sum()
	return json.Marshal(verdictJSON{Tag: v.Tag.String(), Len: v.Len, SHA256: hex.EncodeToString(sum[:])})
}

// UnmarshalJSON decodes {"tag", "len", "sha256"}; the payload is not
// restored, only its digest.
func (v *Verdict) UnmarshalJSON(b []byte) error {
	var j verdictJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	tag, ok := wire.ParseTag(j.Tag)
	if !ok {
		return fmt.Errorf("verdict tag %q is not four characters", j.Tag)
	}
	sum, err := hex.DecodeString(j.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("verdict sha256 %q is not 64 hex digits", j.SHA256)
	}
	if j.Len < 0 || j.Len > wire.MaxPayload {
		return fmt.Errorf("verdict len %d is out of range", j.Len)
	}
	*v = Verdict{Tag: tag, Len: j.Len}
	copy(v.sum[:], sum)
	return nil
}

// MarshalJSON encodes o as in ARCHITECTURE §4; empty lists encode as [].
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

// Equal reports whether o and want are the same outcome, comparing
// verdicts by tag, length and digest as Diff does. Unlike Diff it
// allocates nothing, so a fuzz target can call it on every input.
func (o *Outcome) Equal(want *Outcome) bool {
	if o.Killed != want.Killed || o.KillSignals != want.KillSignals || o.SysRdy != want.SysRdy ||
		o.Step != want.Step || o.WatchdogPauses != want.WatchdogPauses ||
		o.WatchdogPauseNS != want.WatchdogPauseNS || o.Rejected != want.Rejected ||
		!slices.Equal(o.SnapshotRequests, want.SnapshotRequests) || !slices.Equal(o.KernelOps, want.KernelOps) ||
		(o.KASLR == nil) != (want.KASLR == nil) || o.KASLR != nil && *o.KASLR != *want.KASLR ||
		len(o.Verdicts) != len(want.Verdicts) {
		return false
	}
	for i := range o.Verdicts {
		g, w := &o.Verdicts[i], &want.Verdicts[i]
		if g.Tag != w.Tag || g.Len != w.Len || g.Sum() != w.Sum() {
			return false
		}
	}
	return true
}

// Diff lists, one line each, how o differs from want; nil means equal.
// Verdicts compare by tag, length and digest.
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
		g, w := &o.Verdicts[i], &want.Verdicts[i]
		if g.Tag != w.Tag || g.Len != w.Len || g.Sum() != w.Sum() {
			d = append(d, fmt.Sprintf("verdicts[%d]: got %s/%d bytes, want %s/%d bytes (or payload differs)", i, g.Tag, g.Len, w.Tag, w.Len))
		}
	}
	f("rejected", o.Rejected, want.Rejected)
	return d
}
