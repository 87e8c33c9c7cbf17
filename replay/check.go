package replay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/replay/model"
)

// CheckStream runs an in-memory stream through the streaming path with
// chunking c, checks it frame by frame against the reference model
// (invariant 10), and against a second pass split another way
// (invariant 6). It returns the streaming outcome and the broken
// invariants. It holds one frame list, the model's.
func CheckStream(s *Stream, c Chunking) (dispatch.Outcome, dispatch.Stats, []string) {
	v := &violations{}
	m := model.Evaluate(s.Data, s.Starts, s.Times)
	expect := m.Frames
	if expect == nil {
		expect = []model.Frame{} // non-nil: compare even when the model framed nothing
	}
	r := runStream(s, c, expect, v)
	if v.count[8] > 0 {
		return r.out, r.st, v.list
	}

	// Invariant 10: the independent whole-buffer model agrees.
	compareModel(v, r, m)

	// Invariant 6: another split of the same deliveries gives the same
	// frames and outcome.
	other := Chunking{Kind: ChunkRandom, Seed: c.Seed ^ 0x9e3779b97f4a7c15 + uint64(len(s.Data))}
	if c.Kind == ChunkRandom {
		other = Chunking{Kind: ChunkWhole}
	}
	r2 := runStream(s, other, expect, &violations{})
	switch {
	case !r.out.Equal(&r2.out):
		v.add(6, "chunking %s and %s give different outcomes: %s", c, other, strings.Join(r.out.Diff(&r2.out), "; "))
	case r.st != r2.st:
		v.add(6, "chunking %s and %s give different stream counts: %+v vs %+v", c, other, r.st, r2.st)
	case r.seq != r2.seq || r.framed != r2.framed:
		v.add(6, "chunking %s and %s give different frame sequences (%d and %d frames; against the model: %q, %q)",
			c, other, r.framed, r2.framed, orNone(r.modelDiff), orNone(r2.modelDiff))
	}
	return r.out, r.st, v.list
}

func orNone(s string) string {
	if s == "" {
		return "agrees"
	}
	return s
}

// compareModel reports every way the streaming path and the model
// disagree: per frame first (the most useful pointer), then the outcome.
func compareModel(v *violations, r streamRun, m model.Result) {
	if int64(r.framed) != m.FrameCount || r.st.Frames != m.FrameCount {
		v.add(10, "streaming path framed %d frames, the model %d", r.framed, m.FrameCount)
	}
	if r.modelDiff != "" {
		v.add(10, "%s", r.modelDiff)
	}
	out := &r.out
	if field := modelOutcomeDiff(out, &m.Outcome); field != "" {
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
