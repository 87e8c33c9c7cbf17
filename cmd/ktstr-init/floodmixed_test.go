package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// testAddrs is the KADR the flood-mixed tests build with.
var testAddrs = wire.NewKernelAddrs(0x2000000, 0xffff888000000000, 0xffffffff82000000)

// mixedSeen is what framing the flood-mixed buffers showed.
type mixedSeen struct {
	any, intact, tornCRC, tornPad map[wire.Tag]int
	unknown                       map[wire.Tag]int // intact frames of unlisted tags
	resyncs                       int              // intact frames found after a gap
	longestRun                    int              // most identical frames in a row
	maxPayload                    int
}

func newMixedSeen() *mixedSeen {
	return &mixedSeen{
		any: map[wire.Tag]int{}, intact: map[wire.Tag]int{}, tornCRC: map[wire.Tag]int{},
		tornPad: map[wire.Tag]int{}, unknown: map[wire.Tag]int{},
	}
}

// frameBuffer frames one buffer on its own with a fresh Assembler,
// recording into seen, and checks that every gap the Assembler jumped
// (an oversize header and its garbage) is followed by an intact frame.
func frameBuffer(t *testing.T, b []byte, seen *mixedSeen) dispatch.Stats {
	t.Helper()
	var end int64
	var prev []byte
	run := 0
	st := assemble(t, b, func(m *dispatch.Message) {
		if m.Offset != end {
			require.Greater(t, m.Offset, end)
			require.True(t, m.Intact(), "the frame after the gap at %d-%d is framed intact", end, m.Offset)
			require.Equal(t, wire.Stimulus, m.Tag)
			seen.resyncs++
		}
		size := wire.HeaderSize + len(m.Payload)
		raw := b[m.Offset : m.Offset+int64(size)]
		end = m.Offset + int64(size)
		if bytes.Equal(raw, prev) {
			run++
		} else {
			run = 1
		}
		prev = raw
		seen.longestRun = max(seen.longestRun, run)
		seen.maxPayload = max(seen.maxPayload, len(m.Payload))
		seen.any[m.Tag]++
		switch {
		case m.Intact() && m.Tag.Listed():
			seen.intact[m.Tag]++
		case m.Intact():
			seen.unknown[m.Tag]++
		case !m.CRCOK:
			seen.tornCRC[m.Tag]++
		default:
			seen.tornPad[m.Tag]++
		}
	})
	require.Equal(t, int64(len(b)), end, "the buffer's last frame ends the buffer")
	return st
}

// TestFloodMixedBuffers frames each flood-mixed buffer with the real
// Assembler: every tag of the gate table is there, torn both ways and
// intact (but for SNRQ, SCDX and CRSH), with unknown tags, forged
// host→guest tags and oversize headers; each gap after an oversize
// header is its garbage, followed by an intact frame; and the plan's
// counts are what the Assembler counts.
func TestFloodMixedBuffers(t *testing.T) {
	plan := buildFloodMixed(testAddrs)
	require.GreaterOrEqual(t, len(plan.buffers), 2, "a few buffers")
	require.Len(t, plan.counts, len(plan.buffers))
	seen := newMixedSeen()
	var total floodCounts
	var size int
	for i, b := range plan.buffers {
		assert.LessOrEqual(t, len(b), floodMixedBufferMax)
		size += len(b)
		st := frameBuffer(t, b, seen)
		assert.Equal(t, plan.counts[i].Frames, st.Frames, "buffer %d frames", i)
		assert.Equal(t, plan.counts[i].Oversize, st.Oversize, "buffer %d oversize", i)
		assert.Equal(t, plan.counts[i].ResyncBytes, st.ResyncBytes, "buffer %d resync bytes", i)
		total.add(plan.counts[i], 1)
	}
	t.Logf("%d buffers, %d bytes, %d runs, %d frames, %d oversize, %d resync bytes",
		len(plan.buffers), size, len(plan.runs), total.Frames, total.Oversize, total.ResyncBytes)
	assert.Less(t, size, 16<<20, "the whole stream stays small next to guest memory")

	for _, tag := range wire.Tags() {
		assert.Positive(t, seen.any[tag], "%v is in the stream", tag)
		assert.Positive(t, seen.tornCRC[tag], "%v torn (crc)", tag)
		assert.Positive(t, seen.tornPad[tag], "%v torn (pad)", tag)
		if floodMixedNeverIntact[tag] {
			assert.Zero(t, seen.intact[tag], "%v is never sent intact", tag)
		} else {
			assert.Positive(t, seen.intact[tag], "%v intact", tag)
		}
	}
	assert.Positive(t, seen.intact[wire.SnapshotReply], "forged SNRP")
	assert.Positive(t, seen.intact[wire.KernelOpReply], "forged KORP")
	assert.GreaterOrEqual(t, len(seen.unknown), 3, "intact frames of several unknown tags")
	assert.Equal(t, int(total.Oversize), seen.resyncs, "one resync per oversize header")
	assert.GreaterOrEqual(t, total.Oversize, int64(5*floodMixedMinRepeat))
	assert.GreaterOrEqual(t, seen.longestRun, floodMixedMaxRepeat, "thousands of identical frames in a row")
	assert.LessOrEqual(t, seen.maxPayload, floodMixedPayloadMax)
	assert.Equal(t, seen.intact[wire.WatchdogPause], seen.intact[wire.WatchdogResume]-countRun(plan, "intact SCRR"),
		"every intact SCPP has its SCRR")
}

// countRun is how many frames the run of kind what holds.
func countRun(plan floodMixedPlan, what string) int {
	for _, r := range plan.runs {
		if r.kind.what == what {
			return r.repeat
		}
	}
	return 0
}

// TestFloodMixedOversizeCannotFalseSync: in each oversize unit no byte
// after the header's tag, up to the intact frame, is an upper-case
// letter, and every listed tag is four of them, so no window the host
// judges while resynchronising is plausible before the intact frame,
// whatever the seed. Every such window is checked too.
func TestFloodMixedOversizeCannotFalseSync(t *testing.T) {
	for _, tag := range wire.Tags() {
		for i := 0; i < 4; i++ {
			c := byte(tag >> (8 * i))
			require.True(t, c >= 'A' && c <= 'Z', "%v is upper-case letters", tag)
		}
	}
	plan := buildFloodMixed(testAddrs)
	n := 0
	for _, r := range plan.runs {
		if r.kind.counts.Oversize == 0 {
			continue
		}
		n++
		u := r.kind.unit
		h, _ := wire.DecodeHeader(u)
		require.Greater(t, h.Len, uint32(wire.MaxPayload), r.kind.what)
		drop := int(r.kind.counts.ResyncBytes)
		for i, c := range u[4:drop] {
			require.False(t, c >= 'A' && c <= 'Z', "%s: byte %d is %q", r.kind.what, 4+i, c)
		}
		for i := 0; i < drop; i++ {
			h, _ := wire.DecodeHeader(u[i:])
			require.False(t, h.Plausible(), "%s: window at %d", r.kind.what, i)
		}
		m, ok := wire.DecodeHeader(u[drop:])
		require.True(t, ok)
		require.True(t, m.Plausible(), r.kind.what)
		require.Equal(t, len(u), drop+wire.HeaderSize+int(m.Len), "%s: the intact frame ends the unit", r.kind.what)
	}
	assert.Equal(t, 5, n)
}

// TestFloodMixedBuffersChain: written back to back, over and over, the
// buffers frame as they do one by one: each ends in sync.
func TestFloodMixedBuffersChain(t *testing.T) {
	plan := buildFloodMixed(testAddrs)
	a := dispatch.NewAssembler()
	var want floodCounts
	for pass := 0; pass < 2; pass++ {
		for i, b := range plan.buffers {
			a.Feed(b)
			want.add(plan.counts[i], 1)
		}
	}
	var last dispatch.Message
	var lastPayload []byte
	for {
		m, ok := a.Next()
		if !ok {
			break
		}
		last, lastPayload = m, append(lastPayload[:0], m.Payload...)
	}
	st := a.Finish()
	assert.Zero(t, st.TruncatedTailBytes)
	assert.Equal(t, want.Frames, st.Frames)
	assert.Equal(t, want.Oversize, st.Oversize)
	assert.Equal(t, want.ResyncBytes, st.ResyncBytes)
	lb := plan.buffers[len(plan.buffers)-1]
	assert.Equal(t, st.Bytes-int64(wire.HeaderSize+len(lastPayload)), last.Offset, "the last frame ends the stream")
	assert.True(t, bytes.HasSuffix(lb, lastPayload))
}

// TestFloodMixedDeterministic: the stream is the same on every build.
func TestFloodMixedDeterministic(t *testing.T) {
	a, b := buildFloodMixed(testAddrs), buildFloodMixed(testAddrs)
	require.Equal(t, len(a.buffers), len(b.buffers))
	for i := range a.buffers {
		assert.True(t, bytes.Equal(a.buffers[i], b.buffers[i]), "buffer %d", i)
	}
}

// TestFloodMixedReportsWhatItWrote: the scenario writes whole passes of
// the buffers (at least one), and its summary counts the frames, bytes,
// oversize headers and resync bytes the host's Assembler sees.
func TestFloodMixedReportsWhatItWrote(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, 30 * time.Millisecond} {
		var port syncBuffer
		cfg := defaultConfig()
		cfg.Duration = d
		a := newAgent(cfg, &port, io.Discard)
		status, err := runFloodMixed(context.Background(), a)
		require.NoError(t, err)
		assert.Equal(t, 0, status)

		sum, frames, frameBytes, st := floodEnd(t, port.Bytes(), "flood-mixed", func(*dispatch.Message) {})
		plan := buildFloodMixed(kernelAddrs())
		var one floodCounts
		var oneBytes int64
		for i, b := range plan.buffers {
			one.add(plan.counts[i], 1)
			oneBytes += int64(len(b))
		}
		assert.GreaterOrEqual(t, sum.Bytes, oneBytes, "%v: at least one whole pass", d)
		assert.Equal(t, frames, sum.Frames, "%v", d)
		assert.Equal(t, frameBytes+st.ResyncBytes, sum.Bytes, "%v", d)
		assert.Equal(t, st.Oversize, sum.Oversize, "%v", d)
		assert.Equal(t, st.ResyncBytes, sum.ResyncBytes, "%v", d)
		assert.GreaterOrEqual(t, sum.Frames, one.Frames, "%v", d)
		assert.Positive(t, sum.ElapsedNS)
	}
}
