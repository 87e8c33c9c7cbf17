package replay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay/model"
)

// CheckStream runs an in-memory stream through the streaming path with
// chunking c, then checks it against the reference model (invariant 10)
// and against a second, randomly split pass (invariant 6). It returns
// the streaming outcome and the broken invariants.
func CheckStream(s *Stream, c Chunking) (dispatch.Outcome, dispatch.Stats, []string) {
	v := &violations{}
	out, frames, st := runStream(s, c, true, v)
	if v.count[8] > 0 {
		return out, st, v.list
	}

	// Invariant 10: the independent whole-buffer model agrees.
	m := model.Evaluate(s.Data, s.Starts, s.Times)
	compareModel(v, out, frames, st, m)

	// Invariant 6: another split of the same deliveries gives the same
	// frames and outcome.
	other := Chunking{Kind: ChunkRandom, Seed: c.Seed ^ 0x9e3779b97f4a7c15 + uint64(len(s.Data))}
	if c.Kind == ChunkRandom {
		other = Chunking{Kind: ChunkWhole}
	}
	out2, frames2, st2 := runStream(s, other, true, &violations{})
	if !out.Equal(&out2) {
		v.add(6, "chunking %s and %s give different outcomes: %s", c, other, strings.Join(out.Diff(&out2), "; "))
	} else if st != st2 {
		v.add(6, "chunking %s and %s give different stream counts: %+v vs %+v", c, other, st, st2)
	} else if i := firstFrameDiff(frames, frames2); i >= 0 {
		v.add(6, "chunking %s and %s differ at frame %d", c, other, i)
	}
	return out, st, v.list
}

func firstFrameDiff(a, b []FrameResult) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// compareModel reports every way the streaming path and the model
// disagree: per frame first (the most useful pointer), then the outcome.
func compareModel(v *violations, out dispatch.Outcome, frames []FrameResult, st dispatch.Stats, m model.Result) {
	if int64(len(frames)) != m.FrameCount || st.Frames != m.FrameCount {
		v.add(10, "streaming path framed %d frames, the model %d", len(frames), m.FrameCount)
	}
	for i := range min(len(frames), len(m.Frames)) {
		f, g := frames[i], m.Frames[i]
		verdict := ""
		if !f.Result.Accepted() {
			verdict = f.Result.Reject.String()
		}
		if f.Offset != g.Offset || uint32(f.Tag) != g.Tag || uint32(f.Len) != g.Len || f.CRCOK != g.CRCOK ||
			f.PadOK != g.PadOK || verdict != g.Verdict || f.Time != g.Time {
			v.add(10, "frame %d at offset %d: streaming path says %s/%d bytes/%s at t=%d, the model says %s/%d bytes/%s at t=%d",
				i, f.Offset, f.Tag, f.Len, orAccepted(verdict), f.Time, wire.Tag(g.Tag), g.Len, orAccepted(g.Verdict), g.Time)
			break
		}
	}
	if field := modelOutcomeDiff(&out, &m.Outcome); field != "" {
		got, err1 := json.Marshal(out)
		want, err2 := json.Marshal(m.Outcome)
		if err1 != nil || err2 != nil {
			v.add(10, "outcome differs from the model's in %s, and does not marshal: %v %v", field, err1, err2)
			return
		}
		v.add(10, "outcome differs from the model's in %s: streaming %s, model %s", field, got, want)
	}
}

// modelOutcomeDiff names the first field of the §4 JSON in which the
// streaming outcome and the model's differ, or returns "" when they
// agree. It compares the values the JSON would carry, field by field,
// without encoding either: comparing the encodings cost four times what
// the rest of a FuzzDispatch execution did.
func modelOutcomeDiff(o *dispatch.Outcome, m *model.Outcome) string {
	switch {
	case o.Killed != m.Killed:
		return "killed"
	case o.KillSignals != m.KillSignals:
		return "kill_signals"
	case o.SysRdy != m.SysRdy:
		return "sys_rdy"
	case len(o.SnapshotRequests) != len(m.SnapshotRequests):
		return "snapshot_requests"
	case len(o.KernelOps) != len(m.KernelOps):
		return "kernel_ops"
	case (o.KASLR == nil) != (m.KASLR == nil):
		return "kaslr"
	case o.KASLR != nil && dispatch.KASLR(*m.KASLR) != *o.KASLR:
		return "kaslr"
	case o.Step != m.Step:
		return "step"
	case o.WatchdogPauses != m.WatchdogPauses:
		return "watchdog_pauses"
	case o.WatchdogPauseNS != m.WatchdogPauseNs:
		return "watchdog_pause_ns"
	case len(o.Verdicts) != len(m.Verdicts):
		return "verdicts"
	case o.VerdictsDropped != m.VerdictsDropped:
		return "verdicts_dropped"
	}
	for i, r := range o.SnapshotRequests {
		if w := m.SnapshotRequests[i]; r.ID != w.ID || r.Kind != w.Kind || r.Tag != w.Tag {
			return fmt.Sprintf("snapshot_requests[%d]", i)
		}
	}
	for i, k := range o.KernelOps {
		if dispatch.KernelOp(m.KernelOps[i]) != k {
			return fmt.Sprintf("kernel_ops[%d]", i)
		}
	}
	var hexSum [2 * sha256.Size]byte
	for i := range o.Verdicts {
		g, w := &o.Verdicts[i], &m.Verdicts[i]
		hex.Encode(hexSum[:], g.SHA256[:])
		if g.Len != int(w.Len) || g.Tag.String() != w.Tag || string(hexSum[:]) != w.SHA256 {
			return fmt.Sprintf("verdicts[%d]", i)
		}
	}
	hex.Encode(hexSum[:], o.VerdictsDroppedSHA256[:])
	if string(hexSum[:]) != m.VerdictsDroppedSHA256 {
		return "verdicts_dropped_sha256"
	}
	r, w := &o.Rejected, &m.Rejected
	switch {
	case r.CRC != w.CRC, r.Pad != w.Pad, r.UnknownTag != w.UnknownTag, r.ForgedTag != w.ForgedTag,
		r.Shape != w.Shape, r.OneshotRepeat != w.OneshotRepeat, r.Overflow != w.Overflow,
		r.OutOfOrder != w.OutOfOrder:
		return "rejected (a reject counter)"
	case r.Oversize < 0 || uint64(r.Oversize) != w.Oversize, r.ResyncBytes < 0 || uint64(r.ResyncBytes) != w.ResyncBytes,
		r.TruncatedTailBytes < 0 || uint64(r.TruncatedTailBytes) != w.TruncatedTailBytes:
		return "rejected (a stream counter)"
	}
	return ""
}

func orAccepted(s string) string {
	if s == "" {
		return "accepted"
	}
	return s
}

// Describe returns a one-line summary of a frame result for reports.
func (f FrameResult) Describe() string {
	act := f.Result.Effect.String()
	if !f.Result.Accepted() {
		act = "reject:" + f.Result.Reject.String()
	}
	return fmt.Sprintf("%s len=%d intact=%v %s", f.Tag, f.Len, f.CRCOK && f.PadOK, act)
}
