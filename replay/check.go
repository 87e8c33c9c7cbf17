package replay

import (
	"encoding/json"
	"fmt"

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
	if d := out.Diff(&out2); len(d) > 0 {
		v.add(6, "chunking %s and %s give different outcomes: %s", c, other, d[0])
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
	got, err1 := json.Marshal(out)
	want, err2 := json.Marshal(m.Outcome)
	if err1 != nil || err2 != nil {
		v.add(10, "outcome does not marshal: %v %v", err1, err2)
		return
	}
	if string(got) != string(want) {
		v.add(10, "outcome differs from the model's: streaming %s, model %s", got, want)
	}
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
