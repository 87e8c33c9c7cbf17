package dispatch_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/internal/crccopy"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// needFusedCopy skips a test of the Keeper path where the Assembler
// never takes it: without PCLMULQDQ (or off amd64), copy and CRC are
// done apart (and TestKeeperGivesTheSameOutcome still covers the result).
func needFusedCopy(t *testing.T) {
	t.Helper()
	if !crccopy.Fuses(1 << 20) {
		t.Skip("no PCLMULQDQ copy-and-CRC kernel here: the Assembler never asks a Keeper for room")
	}
}

// spyKeeper lends what its Keeper lends and remembers it.
type spyKeeper struct {
	k     dispatch.Keeper
	rooms [][]byte
	tags  []wire.Tag
}

func (s *spyKeeper) Room(tag wire.Tag, n int) []byte {
	r := s.k.Room(tag, n)
	s.tags = append(s.tags, tag)
	s.rooms = append(s.rooms, r)
	return r
}

// keeperStream holds verdict payloads on both sides of the copy
// kernel's threshold, and frames that are lent room but not kept: a
// torn one and a LIFE of the wrong shape, between kept ones.
func keeperStream() ([]byte, [][]byte) {
	pay := func(n int, seed byte) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = seed + byte(i*31)
		}
		return p
	}
	kept := [][]byte{pay(5000, 1), pay(1, 2), pay(65536, 3), pay(1023, 4), pay(300, 5), {2}}
	stream := cat(
		frameWithCRC(wire.Stimulus, kept[0]),
		frameWithTornCRC(wire.Stdout, pay(4096, 9)),
		frameWithCRC(wire.SchedExit, kept[1]),
		frameWithCRC(wire.Lifecycle, []byte{1, 2}), // wrong shape: rejected after the copy
		frameWithCRC(wire.Stdout, kept[2]),
		frameWithPad(wire.Stderr, pay(2048, 7), 1),
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.TestResult, kept[3]),
		frameWithCRC(wire.Stimulus, nil),
		frameWithCRC(wire.Scenario, kept[4]),
		frameWithCRC(wire.Lifecycle, kept[5]),
	)
	return stream, kept
}

// dispatchEach feeds stream in the given pieces and dispatches every
// message before asking for the next, as live runs and replay do.
func dispatchEach(a *dispatch.Assembler, s *dispatch.Sinks, stream []byte, cuts []int) {
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		a.Feed(stream[prev:c])
		for {
			m, ok := a.Next()
			if !ok {
				break
			}
			dispatch.Dispatch(&m, s)
		}
		prev = c
	}
	s.Outcome.SetStreamStats(a.Finish())
}

func verdictPayloads(o *dispatch.Outcome) [][]byte {
	var p [][]byte
	for _, v := range o.Verdicts {
		if len(v.Payload) > 0 {
			p = append(p, v.Payload)
		}
	}
	return p
}

// TestKeeperGivesTheSameOutcome: with the Sinks as the Assembler's
// Keeper, every split of the stream gives the outcome and the verdict
// payloads it gives without one, and the payloads are the frames'.
func TestKeeperGivesTheSameOutcome(t *testing.T) {
	stream, kept := keeperStream()
	plain := dispatch.NewSinks(nil)
	dispatchEach(dispatch.NewAssembler(), plain, stream, nil)
	require.Equal(t, kept, verdictPayloads(&plain.Outcome), "without a Keeper")
	require.Equal(t, uint64(1), plain.Outcome.Rejected.CRC)
	require.Equal(t, uint64(1), plain.Outcome.Rejected.Pad)
	require.Equal(t, uint64(1), plain.Outcome.Rejected.Shape)

	r := rand.New(rand.NewPCG(5, 6))
	splits := map[string][]int{"whole": nil, "every 1000 bytes": nil}
	for i := 1000; i < len(stream); i += 1000 {
		splits["every 1000 bytes"] = append(splits["every 1000 bytes"], i)
	}
	for i := range 20 {
		var cuts []int
		for c := r.IntN(3000); c < len(stream); c += 1 + r.IntN(7000) {
			cuts = append(cuts, c)
		}
		splits[fmt.Sprintf("random %d", i)] = cuts
	}
	for name, cuts := range splits {
		t.Run(name, func(t *testing.T) {
			a, s := dispatch.NewAssembler(), dispatch.NewSinks(nil)
			a.SetKeeper(s)
			dispatchEach(a, s, stream, cuts)
			assert.Empty(t, s.Outcome.Diff(&plain.Outcome))
			assert.Equal(t, kept, verdictPayloads(&s.Outcome))
		})
	}
}

// TestKeeperSavesTheSecondCopy: a bucketed payload is the room the
// Assembler copied it into, not a second copy; without a Keeper it is a
// copy of its own (not the fed bytes).
func TestKeeperSavesTheSecondCopy(t *testing.T) {
	needFusedCopy(t)
	payload := bytes.Repeat([]byte("k"), 4096)
	stream := frameWithCRC(wire.Stdout, payload)

	s := dispatch.NewSinks(nil)
	spy := &spyKeeper{k: s}
	a := dispatch.NewAssembler()
	a.SetKeeper(spy)
	a.Feed(stream)
	m, ok := a.Next()
	require.True(t, ok)
	require.Len(t, spy.rooms, 1)
	assert.Same(t, &spy.rooms[0][0], &m.Payload[0], "the message carries the copy in the room")
	assert.True(t, m.Intact())
	require.Equal(t, dispatch.EffectBucket, dispatch.Dispatch(&m, s).Effect)
	require.Len(t, s.Outcome.Verdicts, 1)
	v := s.Outcome.Verdicts[0].Payload
	assert.Equal(t, payload, v)
	assert.Same(t, &spy.rooms[0][0], &v[0], "the verdict keeps the room the Assembler filled")

	plain := dispatch.NewSinks(nil)
	dispatchEach(dispatch.NewAssembler(), plain, stream, nil)
	pv := plain.Outcome.Verdicts[0].Payload
	assert.Equal(t, payload, pv)
	assert.NotSame(t, &stream[wire.HeaderSize], &pv[0], "without a Keeper the verdict still holds a copy")
}

// TestKeeperIsAskedOnlyForCandidates: no room is asked for payloads
// the one pass would not speed up (below crccopy's threshold, found
// with crccopy.Fuses), nor for frames with pad ≠ 0; the Sinks lend none
// for internal tags or when DigestOnly.
func TestKeeperIsAskedOnlyForCandidates(t *testing.T) {
	needFusedCopy(t)
	least := 1
	for !crccopy.Fuses(least) {
		least++
	}
	big := bytes.Repeat([]byte("b"), least)
	stream := cat(
		frameWithCRC(wire.SysRdy, nil),
		frameWithCRC(wire.Stimulus, nil),
		frameWithCRC(wire.Stimulus, bytes.Repeat([]byte("s"), least-1)),
		frameWithPad(wire.Stimulus, big, 3),
		frameWithCRC(wire.Tag(0x01020304), big), // unknown
		frameWithCRC(wire.Stimulus, big),
	)
	s := dispatch.NewSinks(nil)
	spy := &spyKeeper{k: s}
	a := dispatch.NewAssembler()
	a.SetKeeper(spy)
	dispatchEach(a, s, stream, nil)
	assert.Equal(t, []wire.Tag{0x01020304, wire.Stimulus}, spy.tags)
	assert.Nil(t, spy.rooms[0], "an unknown tag is never kept")
	assert.Len(t, spy.rooms[1], len(big))

	d := dispatch.NewSinks(nil)
	d.DigestOnly = true
	assert.Nil(t, d.Room(wire.Stimulus, 10), "DigestOnly Sinks keep no payloads")
	assert.Nil(t, s.Room(wire.SnapshotRequest, 72), "internal tags are never kept")
	assert.Len(t, s.Room(wire.Stimulus, 10), 10, "positive control")
}

// shortKeeper lends room of the wrong size.
type shortKeeper struct{}

func (shortKeeper) Room(tag wire.Tag, n int) []byte { return make([]byte, n/2) }

// TestKeeperWithWrongRoomIsIgnored: room of the wrong size is not used,
// and the message is the frame's.
func TestKeeperWithWrongRoomIsIgnored(t *testing.T) {
	payload := bytes.Repeat([]byte("w"), 3000)
	a := dispatch.NewAssembler()
	a.SetKeeper(shortKeeper{})
	a.Feed(frameWithCRC(wire.Stdout, payload))
	m, ok := a.Next()
	require.True(t, ok)
	assert.True(t, m.Intact())
	assert.Equal(t, payload, m.Payload)
}

// TestReleasedRoomIsReused: after ReleaseVerdicts the next payload is
// copied into the storage the released ones held, without allocating.
func TestReleasedRoomIsReused(t *testing.T) {
	needFusedCopy(t)
	frame := frameWithCRC(wire.Stdout, bytes.Repeat([]byte("r"), 2000))
	a, s := dispatch.NewAssembler(), dispatch.NewSinks(nil)
	a.SetKeeper(s)
	round := func() {
		a.Feed(frame)
		m, ok := a.Next()
		require.True(t, ok)
		require.Equal(t, dispatch.EffectBucket, dispatch.Dispatch(&m, s).Effect)
		s.ReleaseVerdicts()
	}
	round()
	assert.Zero(t, testing.AllocsPerRun(100, round))
}
