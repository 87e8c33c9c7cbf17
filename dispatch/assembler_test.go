package dispatch_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// oversizeHeader is a header whose length cannot be trusted.
func oversizeHeader(tag wire.Tag) []byte {
	return wire.AppendHeader(nil, wire.Header{Tag: tag, Len: wire.MaxPayload + 1})
}

// run feeds stream split at the given cut points and returns the
// messages (payloads copied) and the outcome JSON.
func runSplit(t *testing.T, stream []byte, cuts []int) ([]dispatch.Message, []byte, dispatch.Stats) {
	t.Helper()
	a := dispatch.NewAssembler()
	h := newHarness()
	var msgs []dispatch.Message
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		got := feed(a, stream[prev:c])
		h.run(got)
		msgs = append(msgs, got...)
		require.LessOrEqual(t, a.Buffered(), dispatch.MaxBuffered)
		require.LessOrEqual(t, a.BufferCap(), dispatch.MaxBuffered)
		prev = c
	}
	st := a.Finish()
	h.out().SetStreamStats(st)
	js, err := json.Marshal(h.out())
	require.NoError(t, err)
	return msgs, js, st
}

func everyByte(n int) []int {
	cuts := make([]int, 0, n)
	for i := 1; i < n; i++ {
		cuts = append(cuts, i)
	}
	return cuts
}

func randomCuts(r *rand.Rand, n int) []int {
	var cuts []int
	for i := 1; i < n; i++ {
		if r.IntN(8) == 0 {
			cuts = append(cuts, i)
		}
	}
	return cuts
}

// mixedStream holds every kind of frame and damage: intact internal and
// verdict frames, torn ones, forged and unknown tags, an oversize header
// followed by garbage and a valid frame, and a partial tail.
func mixedStream() []byte {
	return cat(
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.KernelAddrs, kernelAddrsBytes(2, 3, 4)),
		frameWithCRC(wire.ScenarioStart, []byte("steady")),
		frameWithTornCRC(wire.SchedExit, []byte("torn")),
		frameWithPad(wire.Stimulus, []byte("padded"), 9),
		frameWithCRC(wire.Stimulus, bytes.Repeat([]byte("s"), 3000)),
		frameWithCRC(wire.SnapshotReply, make([]byte, wire.SnapshotReplySize)),
		frameWithCRC(wire.Tag(0x01020304), []byte("unknown")),
		frameWithCRC(wire.WatchdogPause, nil),
		frameWithCRC(wire.WatchdogResume, nil),
		frameWithCRC(wire.Step, u16(2)),
		oversizeHeader(wire.Stdout),
		[]byte("garbage that holds no plausible header at all......"),
		frameWithCRC(wire.SnapshotRequest, snapshotRequestBytes(3, 1, "after-resync")),
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.SchedExit, []byte{7, 0, 0, 0}),
		frameWithCRC(wire.Stdout, []byte("partial tail follows"))[:20],
	)
}

// TestChunkingInvariance (invariant 6): whole, byte by byte, and at
// random split points give identical messages and outcomes.
func TestChunkingInvariance(t *testing.T) {
	stream := mixedStream()
	wantMsgs, wantJSON, wantStats := runSplit(t, stream, nil)
	require.NotEmpty(t, wantMsgs)

	check := func(name string, cuts []int) {
		msgs, js, st := runSplit(t, stream, cuts)
		assert.Equal(t, wantMsgs, msgs, "%s: messages", name)
		assert.JSONEq(t, string(wantJSON), string(js), "%s: outcome", name)
		assert.Equal(t, wantStats, st, "%s: stats", name)
	}
	check("byte-by-byte", everyByte(len(stream)))
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		check("random", randomCuts(r, len(stream)))
	}
	// Every single two-way split.
	for i := 1; i < len(stream); i++ {
		check("two-way", []int{i})
	}

	// Positive control for the comparison itself: a different stream
	// gives a different outcome.
	_, other, _ := runSplit(t, stream[:len(stream)-40], nil)
	assert.NotEqual(t, string(wantJSON), string(other))
}

// TestResyncAfterOversize: an oversize header is counted, its bytes are
// dropped one at a time, and a valid frame right after it is framed.
func TestResyncAfterOversize(t *testing.T) {
	valid := frameWithCRC(wire.SchedExit, []byte("after"))
	tests := []struct {
		name       string
		stream     []byte
		msgs       int
		oversize   int64
		resync     int64
		tail       int64
		wantKilled bool
	}{
		{name: "valid frame right after", stream: cat(oversizeHeader(wire.Stdout), valid), msgs: 1, oversize: 1, resync: 16, wantKilled: true},
		{name: "garbage then frame", stream: cat(oversizeHeader(wire.Stdout), []byte("0123456789"), valid), msgs: 1, oversize: 1, resync: 26, wantKilled: true},
		{name: "unlisted oversize tag", stream: cat(oversizeHeader(wire.Tag(0)), valid), msgs: 1, oversize: 1, resync: 16, wantKilled: true},
		{name: "two oversize headers count once", stream: cat(oversizeHeader(wire.Stdout), oversizeHeader(wire.Stdout), valid), msgs: 1, oversize: 1, resync: 32, wantKilled: true},
		{name: "oversize, resync runs into end", stream: cat(oversizeHeader(wire.Stdout), []byte("0123456789")), oversize: 1, resync: 11, tail: 15},
		{name: "oversize alone", stream: oversizeHeader(wire.Stdout), oversize: 1, resync: 1, tail: 15},
		{name: "unknown tag with sane len is framed", stream: cat(frameWithCRC(wire.Tag(7), []byte("abc")), valid), msgs: 2, wantKilled: true},
		{name: "partial frame at end", stream: valid[:len(valid)-1], tail: int64(len(valid) - 1)},
		{name: "partial header at end", stream: valid[:5], tail: 5},
		// A plausible header overlapping the oversize header's own
		// bytes: dropping 4 bytes reaches it.
		{name: "plausible header inside oversize header", stream: overlapStream(), msgs: 1, oversize: 1, resync: 4, wantKilled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, cuts := range [][]int{nil, everyByte(len(tc.stream))} {
				msgs, _, st := runSplit(t, tc.stream, cuts)
				assert.Len(t, msgs, tc.msgs)
				assert.Equal(t, tc.oversize, st.Oversize, "oversize")
				assert.Equal(t, tc.resync, st.ResyncBytes, "resync bytes")
				assert.Equal(t, tc.tail, st.TruncatedTailBytes, "tail bytes")
				assert.EqualValues(t, len(tc.stream), st.Bytes)
				// Every byte is accounted for exactly once.
				framed := int64(0)
				for _, m := range msgs {
					framed += int64(wire.HeaderSize + len(m.Payload))
				}
				assert.Equal(t, st.Bytes, framed+st.ResyncBytes+st.TruncatedTailBytes, "byte accounting")
				h := dispatchStream(t, tc.stream)
				assert.Equal(t, tc.wantKilled, h.killed())
			}
		})
	}
}

// overlapStream is an oversize header whose bytes 4..19 form an intact,
// empty SCDX frame header.
func overlapStream() []byte {
	inner := frameWithCRC(wire.SchedExit, nil) // 16 bytes, crc 0
	b := make([]byte, 4, 20)
	binary.LittleEndian.PutUint32(b, uint32(wire.Stdout))
	b = append(b, inner...)
	// b[4:8] is the outer len field: it holds the SCDX tag, 0x53434458 >
	// MaxPayload, so the outer header is oversize.
	return b
}

// TestMessageOffsets: offsets are stream offsets of frame headers.
func TestMessageOffsets(t *testing.T) {
	f1 := frameWithCRC(wire.Stimulus, []byte("one"))
	f2 := frameWithCRC(wire.Stimulus, []byte("two!"))
	stream := cat(f1, oversizeHeader(wire.Stdout), f2)
	msgs, _, _ := runSplit(t, stream, everyByte(len(stream)))
	require.Len(t, msgs, 2)
	assert.EqualValues(t, 0, msgs[0].Offset)
	assert.EqualValues(t, len(f1)+16, msgs[1].Offset)
}

// TestMemoryBound (invariant 7): a maximal frame fed byte-wise never
// makes the buffer exceed 16 B + MaxPayload, and the frame is framed.
func TestMemoryBound(t *testing.T) {
	payload := bytes.Repeat([]byte{0xA5}, wire.MaxPayload)
	stream := cat(frameWithCRC(wire.Stdout, payload), frameWithCRC(wire.Stdout, payload[:10]))
	a := dispatch.NewAssembler()
	n := 0
	for i := 0; i < len(stream); i += 4093 {
		a.Feed(stream[i:min(i+4093, len(stream))])
		for {
			m, ok := a.Next()
			if !ok {
				break
			}
			n++
			assert.True(t, m.Intact())
		}
		require.LessOrEqual(t, a.BufferCap(), dispatch.MaxBuffered)
	}
	assert.Equal(t, 2, n)
	assert.Equal(t, dispatch.MaxBuffered, a.BufferCap(), "the maximal frame needed the whole bound")

	// A declared length one past the bound is never buffered for.
	b := dispatch.NewAssembler()
	b.Feed(cat(oversizeHeader(wire.Stdout), bytes.Repeat([]byte{0}, 2<<20)))
	_, ok := b.Next()
	assert.False(t, ok)
	assert.Less(t, b.BufferCap(), 1024, "resync scans in place")
}

// TestRandomInputNeverPanics (invariant 8) on random and adversarial
// streams, split at random: no panic, memory within the bound, every
// byte accounted for.
func TestRandomInputNeverPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	tags := wire.Tags()
	for i := range 300 {
		var stream []byte
		for len(stream) < 4096 {
			switch r.IntN(6) {
			case 0: // random bytes
				b := make([]byte, r.IntN(64))
				for j := range b {
					b[j] = byte(r.Uint32())
				}
				stream = append(stream, b...)
			case 1: // intact frame of a listed tag
				p := make([]byte, r.IntN(100))
				stream = append(stream, frameWithCRC(tags[r.IntN(len(tags))], p)...)
			case 2: // header with random len
				stream = wire.AppendHeader(stream, wire.Header{Tag: tags[r.IntN(len(tags))], Len: r.Uint32(), CRC: r.Uint32()})
			case 3: // torn frame
				stream = append(stream, frameWithTornCRC(tags[r.IntN(len(tags))], []byte("torn"))...)
			case 4: // oversize
				stream = append(stream, oversizeHeader(tags[r.IntN(len(tags))])...)
			case 5: // truncated frame
				f := frameWithCRC(wire.Stimulus, make([]byte, 50))
				stream = append(stream, f[:r.IntN(len(f))]...)
			}
		}
		msgs, _, st := runSplit(t, stream, randomCuts(r, len(stream)))
		framed := int64(0)
		for _, m := range msgs {
			framed += int64(wire.HeaderSize + len(m.Payload))
		}
		require.Equal(t, st.Bytes, framed+st.ResyncBytes+st.TruncatedTailBytes, "byte accounting, stream %d", i)
	}
}

// TestAssemblerReset: a reset assembler starts a fresh stream.
func TestAssemblerReset(t *testing.T) {
	a := dispatch.NewAssembler()
	f := frameWithCRC(wire.Stimulus, []byte("x"))
	feed(a, f[:7])
	a.Reset()
	msgs := feed(a, f)
	require.Len(t, msgs, 1)
	assert.EqualValues(t, 0, msgs[0].Offset)
	assert.Equal(t, dispatch.Stats{Bytes: int64(len(f)), Frames: 1}, a.Stats())
}

// TestFeedWithoutDrain: feeding twice before draining loses nothing.
func TestFeedWithoutDrain(t *testing.T) {
	a := dispatch.NewAssembler()
	f := frameWithCRC(wire.Stimulus, []byte("abc"))
	a.Feed(f[:10])
	a.Feed(f[10:])
	a.Feed(f)
	n := 0
	for {
		m, ok := a.Next()
		if !ok {
			break
		}
		assert.Equal(t, []byte("abc"), m.Payload)
		n++
	}
	assert.Equal(t, 2, n)
}
