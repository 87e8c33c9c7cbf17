package tracetool

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ktstr/ktstr/replay"
)

// DefaultDiffContext is how many frames Diff shows before and after the
// first divergence.
const DefaultDiffContext = 3

// DiffFrame is one frame as Diff shows it.
type DiffFrame struct {
	Index  int64  `json:"index"`   // position among the trace's TX frames
	Offset int64  `json:"offset"`  // stream offset of its header
	TimeNS int64  `json:"time_ns"` // run clock of the delivery completing it
	Tag    string `json:"tag"`     // four characters, or 0x%08x
	Len    int    `json:"len"`     // payload bytes
	SHA256 string `json:"sha256"`  // of the payload, lower-case hex
	Intact bool   `json:"intact"`  // crc matches and pad is zero
	Action string `json:"action"`  // its effect, or "reject: REASON"
}

func diffFrame(f *Frame) DiffFrame {
	return DiffFrame{Index: f.Index, Offset: f.Offset, TimeNS: f.Time, Tag: f.Tag.String(), Len: f.Len,
		SHA256: f.Digest.String(), Intact: f.Intact, Action: f.Action()}
}

// FramePair is a frame of A and the frame at the same position in B.
type FramePair struct {
	A DiffFrame `json:"a"` // the frame in A
	B DiffFrame `json:"b"` // the frame at the same position in B
}

// Divergence is the first position at which the TX frame sequences of
// two traces differ.
type Divergence struct {
	Index int64 `json:"index"` // the position, among TX frames, from 0
	// What differs: any of "tag", "payload" (length or digest), "intact",
	// "result", or "A ended" / "B ended" when one trace has no frame there.
	Differs []string   `json:"differs"`
	A       *DiffFrame `json:"a"` // nil when A has no frame at Index
	B       *DiffFrame `json:"b"` // nil when B has no frame at Index
	// Before are the equal frames just before Index (up to the context),
	// AfterA and AfterB the frames just after it in each trace.
	Before []FramePair `json:"before"`  // oldest first
	AfterA []DiffFrame `json:"after_a"` // A's frames after Index
	AfterB []DiffFrame `json:"after_b"` // B's frames after Index
}

// DiffSide is what Diff read of one trace.
type DiffSide struct {
	Trace      string             `json:"trace"`      // the trace as named
	Frames     int64              `json:"frames"`     // TX frames
	Bytes      int64              `json:"bytes"`      // TX bytes
	Deliveries int64              `json:"deliveries"` // TX deliveries on the bulk port
	End        string             `json:"end"`        // the END reason, "" without one
	Truncated  *replay.Truncation `json:"truncated"`  // where it ends early; nil when complete
}

// DiffResult compares two traces: their TX frame sequences (tag,
// payload digest, gate result, frame by frame) and their replayed
// outcomes, and how each run ended. Equal says all three are the same.
type DiffResult struct {
	A          DiffSide    `json:"a"`          // the first trace
	B          DiffSide    `json:"b"`          // the second trace
	Equal      bool        `json:"equal"`      // same frames, same outcome and same END reason
	Divergence *Divergence `json:"divergence"` // nil when the sequences are equal
	Outcome    []FieldDiff `json:"outcome"`    // the outcome fields that differ; [] when none
}

// Diff reads two traces in step, frame by frame, holding the context
// frames and nothing else per frame, and compares them. Offsets and
// times are shown, not compared: two runs of one scenario differ in
// them. nameA and nameB label the traces; ctx is the context (0 means
// DefaultDiffContext). Errors wrap replay.ErrBadTrace.
func Diff(a, b io.Reader, nameA, nameB string, ctx int) (*DiffResult, error) {
	if ctx <= 0 {
		ctx = DefaultDiffContext
	}
	ra, err := NewReader(a, nameA, ReaderOptions{Digest: true})
	if err != nil {
		return nil, err
	}
	rb, err := NewReader(b, nameB, ReaderOptions{Digest: true})
	if err != nil {
		return nil, err
	}
	next := func(r *Reader) (*Frame, error) {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return f, err
	}
	res := &DiffResult{Outcome: []FieldDiff{}}
	var ring []FramePair // the last ctx equal pairs
	var d *Divergence
	for d == nil {
		fa, err := next(ra)
		if err != nil {
			return nil, err
		}
		fb, err := next(rb)
		if err != nil {
			return nil, err
		}
		if fa == nil && fb == nil {
			break
		}
		if differs := frameDiff(fa, fb); len(differs) > 0 {
			d = &Divergence{Differs: differs, Before: ring, AfterA: []DiffFrame{}, AfterB: []DiffFrame{}}
			if fa != nil {
				x := diffFrame(fa)
				d.A, d.Index = &x, fa.Index
			}
			if fb != nil {
				x := diffFrame(fb)
				d.B, d.Index = &x, fb.Index
			}
			break
		}
		if len(ring) == ctx {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, FramePair{A: diffFrame(fa), B: diffFrame(fb)})
	}
	// Drain both, keeping the frames just after the divergence.
	drain := func(r *Reader, after *[]DiffFrame) error {
		for {
			f, err := next(r)
			if err != nil || f == nil {
				return err
			}
			if after != nil && len(*after) < ctx {
				*after = append(*after, diffFrame(f))
			}
		}
	}
	var afterA, afterB *[]DiffFrame
	if d != nil {
		afterA, afterB = &d.AfterA, &d.AfterB
	}
	if err := drain(ra, afterA); err != nil {
		return nil, err
	}
	if err := drain(rb, afterB); err != nil {
		return nil, err
	}
	if d != nil && d.Before == nil {
		d.Before = []FramePair{}
	}
	res.Divergence = d
	oa, ob := ra.Outcome(), rb.Outcome()
	if fd := DiffOutcomes(&oa, &ob); fd != nil {
		res.Outcome = fd
	}
	res.A, res.B = diffSide(ra, nameA), diffSide(rb, nameB)
	// How the run ended is part of what a rerun must reproduce: the
	// same frames ending in a watchdog instead of a power-off differ.
	res.Equal = d == nil && len(res.Outcome) == 0 && res.A.End == res.B.End
	return res, nil
}

func diffSide(r *Reader, name string) DiffSide {
	tx, _ := r.Deliveries()
	bytes, _ := r.Bytes()
	s := DiffSide{Trace: name, Frames: r.Stats().Frames, Bytes: bytes, Deliveries: tx, Truncated: r.Truncation()}
	if e := r.End(); e != nil {
		s.End = e.Reason
	}
	return s
}

// frameDiff names what differs between two frames at one position.
func frameDiff(a, b *Frame) []string {
	switch {
	case a == nil:
		return []string{"A ended"}
	case b == nil:
		return []string{"B ended"}
	}
	var d []string
	if a.Tag != b.Tag {
		d = append(d, "tag")
	}
	if a.Len != b.Len || a.Digest != b.Digest {
		d = append(d, "payload")
	}
	if a.Intact != b.Intact {
		d = append(d, "intact")
	}
	if a.Result != b.Result {
		d = append(d, "result")
	}
	return d
}

// Describe renders a frame on one line: tag, length, the first 12 hex
// digits of its payload digest and its action.
func (f DiffFrame) Describe() string {
	return fmt.Sprintf("%s len %d sha256 %.12s %s", f.Tag, f.Len, f.SHA256, f.Action)
}

// Where renders a frame's offset and time.
func (f DiffFrame) Where() string {
	return fmt.Sprintf("offset %d at %.6fs", f.Offset, float64(f.TimeNS)/1e9)
}

// endText is how a side ended, for Summary: cut short, its END reason
// (quoted, as it comes from the trace), or no END record.
func (s DiffSide) endText() string {
	switch {
	case s.Truncated != nil:
		return fmt.Sprintf("cut short at byte %d", s.Truncated.At)
	case s.End == "":
		return "no END record"
	}
	return strconv.Quote(s.End)
}

// Summary says in one line whether and where the traces differ.
func (r *DiffResult) Summary() string {
	switch {
	case r.Equal:
		return fmt.Sprintf("equal: %d TX frames, the same tags, payloads and gate results, and the same outcome", r.A.Frames)
	case r.Divergence == nil && len(r.Outcome) == 0:
		return fmt.Sprintf("the %d TX frames and the outcomes are the same, but the runs ended differently (A %s, B %s)", r.A.Frames, r.A.endText(), r.B.endText())
	case r.Divergence == nil:
		return fmt.Sprintf("the %d TX frames are the same, the outcomes differ in %d fields", r.A.Frames, len(r.Outcome))
	}
	return fmt.Sprintf("first divergence at TX frame %d (%s); the outcomes differ in %d fields",
		r.Divergence.Index, strings.Join(r.Divergence.Differs, ", "), len(r.Outcome))
}
