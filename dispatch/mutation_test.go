package dispatch_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// These tests pin behaviour that mutation testing (make mutation,
// docs/mutation.md) showed the other tests left loose.

// TestMessageIntactNeedsBoth: a frame is intact iff its crc matches AND
// its pad is zero (docs/protocol.md).
func TestMessageIntactNeedsBoth(t *testing.T) {
	for _, tc := range []struct {
		crc, pad, want bool
	}{
		{true, true, true},
		{true, false, false},
		{false, true, false},
		{false, false, false},
	} {
		m := dispatch.Message{CRCOK: tc.crc, PadOK: tc.pad}
		assert.Equal(t, tc.want, m.Intact(), "crc ok %v, pad ok %v", tc.crc, tc.pad)
	}
}

// TestFeedReadsOnlyThePiecesBytes: a delivery is a slice whose capacity
// may run past its length into memory the caller reuses. The Assembler
// must read only the bytes fed: pieces whose spare capacity holds junk
// frame exactly like the same stream fed whole.
func TestFeedReadsOnlyThePiecesBytes(t *testing.T) {
	stream := cat(
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.Stimulus, []byte("stimulus payload")),
		frameWithCRC(wire.SchedExit, []byte{7, 0, 0, 0}),
		oversizeHeader(wire.Stdout),
		frameWithCRC(wire.TestResult, bytes.Repeat([]byte("t"), 300)),
	)
	want, _, wantStats := runSplit(t, stream, nil)
	require.Len(t, want, 4)

	// A plausible-looking but wrong frame as junk: if it were ever read,
	// the messages would differ.
	junk := frameWithCRC(wire.SchedExit, []byte("JUNK"))
	for _, size := range []int{1, 3, 15, 16, 17, 40} {
		a := dispatch.NewAssembler()
		var got []dispatch.Message
		for off := 0; off < len(stream); off += size {
			end := min(off+size, len(stream))
			buf := make([]byte, end-off, end-off+len(junk))
			copy(buf, stream[off:end])
			buf = append(buf, junk...)[:end-off] // junk lives past len, inside cap
			a.Feed(buf)
			for {
				m, ok := a.Next()
				if !ok {
					break
				}
				m.Payload = bytes.Clone(m.Payload)
				got = append(got, m)
			}
			clear(buf[:cap(buf)]) // the caller reuses its buffer
		}
		st := a.Finish()
		require.Len(t, got, len(want), "pieces of %d bytes", size)
		for i := range want {
			assert.Equal(t, want[i].Tag, got[i].Tag, "pieces of %d, frame %d", size, i)
			assert.Equal(t, want[i].Payload, got[i].Payload, "pieces of %d, frame %d", size, i)
			assert.Equal(t, want[i].Offset, got[i].Offset, "pieces of %d, frame %d", size, i)
			assert.True(t, got[i].Intact())
		}
		assert.Equal(t, wantStats, st, "pieces of %d", size)
	}
}

// TestMaxBufferedIsHeaderPlusMaxPayload: invariant 7's bound, as the
// contract states it.
func TestMaxBufferedIsHeaderPlusMaxPayload(t *testing.T) {
	assert.Equal(t, 16+(1<<20), dispatch.MaxBuffered)
}

// TestVerdictJSONBounds: a recorded verdict's sha256 must be exactly 64
// hex digits and its len within 0..MaxPayload, both ends included.
func TestVerdictJSONBounds(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"tag":"SCDX","len":0,"sha256":"` + sum + `"}`, true},
		{`{"tag":"SCDX","len":1048576,"sha256":"` + sum + `"}`, true},
		{`{"tag":"SCDX","len":1048577,"sha256":"` + sum + `"}`, false},
		{`{"tag":"SCDX","len":-1,"sha256":"` + sum + `"}`, false},
		{`{"tag":"SCDX","len":0,"sha256":"abcd"}`, false},
		{`{"tag":"SCDX","len":0,"sha256":"` + strings.Repeat("zz", 32) + `"}`, false},
	} {
		var v dispatch.Verdict
		err := json.Unmarshal([]byte(tc.json), &v)
		if tc.ok {
			assert.NoError(t, err, tc.json)
		} else {
			assert.Error(t, err, tc.json)
		}
	}
}

// TestOutcomeDiffFindsEachDifference: Diff reports a difference in the
// KASLR slots (set on one side, or different) and in any one of a
// verdict's tag, length and payload; equal outcomes give none.
func TestOutcomeDiffFindsEachDifference(t *testing.T) {
	base := func() dispatch.Outcome {
		o := dispatch.NewOutcome()
		o.KASLR = &dispatch.KASLR{PhysBase: 1, PageOffsetBase: 2, TextAddr: 3}
		o.Verdicts = []dispatch.Verdict{dispatch.NewVerdict(wire.Stimulus, []byte("abc"))}
		return o
	}
	b := base()
	assert.Empty(t, b.Diff(ptr(base())), "equal outcomes")
	for name, change := range map[string]func(o *dispatch.Outcome){
		"kaslr unset":     func(o *dispatch.Outcome) { o.KASLR = nil },
		"kaslr differs":   func(o *dispatch.Outcome) { o.KASLR = &dispatch.KASLR{PhysBase: 9, PageOffsetBase: 2, TextAddr: 3} },
		"verdict tag":     func(o *dispatch.Outcome) { o.Verdicts[0] = dispatch.NewVerdict(wire.StepEnd, []byte("abc")) },
		"verdict len":     func(o *dispatch.Outcome) { o.Verdicts[0].Len = 4 },
		"verdict payload": func(o *dispatch.Outcome) { o.Verdicts[0] = dispatch.NewVerdict(wire.Stimulus, []byte("abd")) },
	} {
		got := base()
		change(&got)
		assert.Len(t, got.Diff(ptr(base())), 1, name)
		want := base()
		assert.Len(t, want.Diff(&got), 1, name+" (the other way)")
	}
	both := base()
	both.KASLR = nil
	other := base()
	other.KASLR = nil
	assert.Empty(t, both.Diff(&other), "KASLR unset on both sides")
}

func ptr[T any](v T) *T { return &v }

// TestResyncFramesInPlace: the Assembler copies only the bytes of a
// frame that straddles pieces; a frame lying wholly inside a fed piece
// is returned in place, its payload the piece's own bytes. That holds
// across a resync too: after an oversize header, the frames that follow
// come out right and in place — the frame that ends the piece exactly
// included — and the Assembler's own buffer stays unallocated while it
// frames inside the piece. A resync whose bytes straddle pieces (the
// oversize header did, or the garbage after it) goes back to framing in
// place once the bytes held in the buffer are judged.
func TestResyncFramesInPlace(t *testing.T) {
	sysRdy := frameWithCRC(wire.SysRdy, nil)
	stim := frameWithCRC(wire.Stimulus, []byte("after the resync"))
	exit := frameWithCRC(wire.SchedExit, []byte{7, 0, 0, 0})
	garbage := []byte("garbage, no plausible header")
	over := oversizeHeader(wire.Stdout)
	one := func(b ...[]byte) [][]byte { return [][]byte{cat(b...)} }
	for _, tc := range []struct {
		name   string
		pieces [][]byte
		tags   []wire.Tag
		resync int64
	}{
		{"empty frame ends the piece", one(over, sysRdy), []wire.Tag{wire.SysRdy}, 16},
		{"frame ends the piece", one(over, garbage, stim), []wire.Tag{wire.Stimulus}, int64(16 + len(garbage))},
		{"frames follow", one(over, stim, exit, sysRdy), []wire.Tag{wire.Stimulus, wire.SchedExit, wire.SysRdy}, 16},
		{"two resyncs", one(over, exit, oversizeHeader(wire.Crash), garbage, sysRdy), []wire.Tag{wire.SchedExit, wire.SysRdy}, int64(32 + len(garbage))},
		{"resync begun in the buffer", [][]byte{over[:10], cat(over[10:], garbage, stim, exit)}, []wire.Tag{wire.Stimulus, wire.SchedExit}, int64(16 + len(garbage))},
		{"resync across pieces", [][]byte{cat(over, garbage), cat(garbage, stim, exit)}, []wire.Tag{wire.Stimulus, wire.SchedExit}, int64(16 + 2*len(garbage))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dispatch.NewAssembler()
			var tags []wire.Tag
			start := int64(0) // stream offset of the current piece
			for _, p := range tc.pieces {
				a.Feed(p)
				for {
					m, ok := a.Next()
					if !ok {
						break
					}
					tags = append(tags, m.Tag)
					assert.True(t, m.Intact(), "%s", m.Tag)
					if len(tc.pieces) == 1 {
						assert.Zero(t, a.BufferCap(), "%s at %d: nothing gathered", m.Tag, m.Offset)
					}
					if at := m.Offset - start; at >= 0 && len(m.Payload) > 0 {
						assert.Same(t, &p[at+wire.HeaderSize], &m.Payload[0], "%s at %d is not copied", m.Tag, m.Offset)
					}
				}
				start += int64(len(p))
			}
			st := a.Finish()
			assert.Equal(t, tc.tags, tags)
			assert.Equal(t, tc.resync, st.ResyncBytes, "resync bytes")
			assert.Zero(t, st.TruncatedTailBytes, "tail")
		})
	}
}

// TestFinishCountsEveryUnframedByte: Finish counts as truncated tail
// every byte it is left holding — a partial frame in its buffer and
// pieces fed but never framed — so every byte fed is accounted for
// exactly once (docs/protocol.md); a second Finish adds and loses nothing.
func TestFinishCountsEveryUnframedByte(t *testing.T) {
	f := frameWithCRC(wire.Stimulus, []byte("0123456789"))
	for _, tc := range []struct {
		name   string
		pieces [][]byte // fed in order
		drain  int      // Next is drained after this many pieces; 0: never
		frames int64
		tail   int64
	}{
		{"fed, never framed", [][]byte{f, f[:9]}, 0, 0, int64(len(f) + 9)},
		{"held and queued", [][]byte{f[:20], f[:7]}, 1, 0, 27},
		{"framed, then held and queued", [][]byte{cat(f, f[:20]), f[:5]}, 1, 1, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dispatch.NewAssembler()
			var frames int64
			for i, p := range tc.pieces {
				a.Feed(p)
				if i+1 == tc.drain {
					frames += int64(len(feed(a, nil)))
				}
			}
			st := a.Finish()
			assert.Equal(t, tc.frames, frames)
			assert.Equal(t, tc.frames, st.Frames)
			assert.Equal(t, tc.tail, st.TruncatedTailBytes, "tail")
			assert.Equal(t, st.Bytes, tc.frames*int64(len(f))+st.TruncatedTailBytes, "byte accounting")
			assert.Equal(t, st, a.Finish(), "a second Finish")
			assert.Equal(t, st, a.Stats())
		})
	}
}

// TestWatchdogPauseSpansAdd: watchdog_pauses counts accepted SCPP and
// watchdog_pause_ns adds up every closed pause span on the run clock
// (docs/protocol.md); a pause not yet resumed adds nothing.
func TestWatchdogPauseSpansAdd(t *testing.T) {
	pause, resume := frameWithCRC(wire.WatchdogPause, nil), frameWithCRC(wire.WatchdogResume, nil)
	h := newHarness()
	for _, step := range []struct {
		at     int64
		frame  []byte
		pauses uint64
		ns     int64
	}{
		{100, pause, 1, 0},
		{250, resume, 1, 150},
		{1000, pause, 2, 150},
		{1600, resume, 2, 750},
		{2000, pause, 3, 750},
	} {
		h.now = step.at
		for _, r := range h.feed(step.frame) {
			require.True(t, r.Accepted())
		}
		assert.Equal(t, step.pauses, h.out().WatchdogPauses, "at %d", step.at)
		assert.Equal(t, step.ns, h.out().WatchdogPauseNS, "at %d", step.at)
	}
	assert.Equal(t, []int64{100, 1000, 2000}, h.wd.pauses)
	assert.Equal(t, []int64{250, 1600}, h.wd.resumes)
}

// TestWatchdogPauseSpansSaturate: forged clocks cannot wrap the pause
// total: a span from MinInt64 to MaxInt64, twice, saturates at
// MaxInt64, and a clock that goes back adds nothing. Control: an
// ordinary span after a backwards one still adds.
func TestWatchdogPauseSpansSaturate(t *testing.T) {
	pause, resume := frameWithCRC(wire.WatchdogPause, nil), frameWithCRC(wire.WatchdogResume, nil)
	for _, tc := range []struct {
		name  string
		spans [][2]int64
		want  int64
	}{
		{"the widest span, twice", [][2]int64{{math.MinInt64, math.MaxInt64}, {math.MinInt64, math.MaxInt64}}, math.MaxInt64},
		{"up to the edge", [][2]int64{{0, math.MaxInt64 - 1}, {5, 6}}, math.MaxInt64},
		{"the clock going back", [][2]int64{{500, 100}}, 0},
		{"back, then forward (control)", [][2]int64{{500, 100}, {100, 350}}, 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness()
			for _, sp := range tc.spans {
				h.now = sp[0]
				h.feed(pause)
				h.now = sp[1]
				h.feed(resume)
			}
			assert.Equal(t, tc.want, h.out().WatchdogPauseNS)
			assert.EqualValues(t, len(tc.spans), h.out().WatchdogPauses)
		})
	}
}

// TestOffsetsCountTheDroppedTail: a Message's Offset is its position in
// everything fed, so the bytes Finish drops as tail still count: a frame
// fed after Finish (without Reset) starts where the tail ended, and
// after Reset numbering starts again at 0 (the control).
func TestOffsetsCountTheDroppedTail(t *testing.T) {
	f := frameWithCRC(wire.Stimulus, []byte("payload"))
	for _, tc := range []struct {
		name  string
		reset bool
		want  int64
	}{
		{"continued", false, int64(len(f) + 9)},
		{"after Reset", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dispatch.NewAssembler()
			a.Feed(cat(f, f[:9])) // one frame, then 9 bytes of the next
			require.Len(t, feed(a, nil), 1)
			require.EqualValues(t, 9, a.Finish().TruncatedTailBytes)
			if tc.reset {
				a.Reset()
			}
			a.Feed(f)
			m, ok := a.Next()
			require.True(t, ok)
			assert.Equal(t, tc.want, m.Offset)
		})
	}
}
