package dispatch_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// droppedDigest computes verdicts_dropped_sha256 from the protocol's
// words: per dropped verdict, in stream order, tag u32 LE ‖ len u32 LE ‖
// payload.
func droppedDigest(tags []wire.Tag, payloads [][]byte) dispatch.Digest {
	h := sha256.New()
	for i, tag := range tags {
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(tag)))
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(payloads[i]))))
		h.Write(payloads[i])
	}
	var d dispatch.Digest
	h.Sum(d[:0])
	return d
}

// fillBudget returns MaxVerdicts empty STIM frames.
func fillBudget() []byte {
	return bytes.Repeat(wire.AppendFrame(nil, wire.Stimulus, nil), dispatch.MaxVerdicts)
}

// TestVerdictBudget: the bucket keeps MaxVerdicts entries; a verdict past
// it keeps its row's effect, counts in verdicts_dropped and is folded
// into the dropped digest, so every verdict is in exactly one digest.
func TestVerdictBudget(t *testing.T) {
	big := bytes.Repeat([]byte{0x5a}, 5000) // larger than the digest's gather buffer
	past := []struct {
		tag     wire.Tag
		payload []byte
	}{
		{wire.Stimulus, []byte("a")},
		{wire.GuestProfile, []byte("bc")},
		{wire.Stdout, big},
		{wire.ScenarioStart, nil},
		{wire.SchedExit, []byte{7, 0, 0, 0}},
	}
	var stream []byte
	var tags []wire.Tag
	var payloads [][]byte
	for _, p := range past {
		stream = wire.AppendFrame(stream, p.tag, p.payload)
		tags, payloads = append(tags, p.tag), append(payloads, p.payload)
	}

	t.Run("exactly the budget drops nothing", func(t *testing.T) {
		h := newHarness()
		h.feed(fillBudget())
		o := h.s.Finish()
		assert.Len(t, o.Verdicts, dispatch.MaxVerdicts)
		assert.Zero(t, o.VerdictsDropped)
		assert.Equal(t, dispatch.EmptyDigest(), o.VerdictsDroppedSHA256)
	})
	t.Run("past the budget", func(t *testing.T) {
		h := newHarness()
		h.feed(fillBudget())
		h.now = 500
		results := h.feed(stream)
		o := h.s.Finish()
		require.Len(t, results, len(past))
		assert.Equal(t, dispatch.EffectKill, results[len(past)-1].Effect, "SCDX still kills")
		assert.True(t, o.Killed)
		assert.EqualValues(t, 1, o.KillSignals)
		assert.Equal(t, []int64{500}, h.wd.rearms, "SCST still re-arms")
		assert.EqualValues(t, 500, h.s.ScenarioStart())
		assert.Len(t, o.Verdicts, dispatch.MaxVerdicts)
		assert.EqualValues(t, len(past), o.VerdictsDropped)
		assert.Equal(t, droppedDigest(tags, payloads), o.VerdictsDroppedSHA256)
		// The JSON carries both, and reads back to an equal outcome.
		js, err := json.Marshal(o)
		require.NoError(t, err)
		assert.Contains(t, string(js), fmt.Sprintf(`"verdicts_dropped":%d,"verdicts_dropped_sha256":"%s"`, len(past), droppedDigest(tags, payloads)))
		var back dispatch.Outcome
		require.NoError(t, json.Unmarshal(js, &back))
		assert.True(t, back.Equal(&o))
		// Control: the digest depends on every dropped byte and on order.
		assert.NotEqual(t, droppedDigest(tags[1:], payloads[1:]), o.VerdictsDroppedSHA256)
		assert.NotEqual(t, droppedDigest([]wire.Tag{tags[1], tags[0]}, [][]byte{payloads[1], payloads[0]}),
			droppedDigest(tags[:2], payloads[:2]))
	})
	t.Run("split anywhere gives the same digest", func(t *testing.T) {
		want := func() dispatch.Outcome { h := newHarness(); h.feed(fillBudget()); h.feed(stream); return h.s.Finish() }()
		all := append(fillBudget(), stream...)
		for _, step := range []int{1, 7, 4093, 65536} {
			h := newHarness()
			for i := 0; i < len(all); i += step {
				h.feed(all[i:min(i+step, len(all))])
			}
			got := h.s.Finish()
			assert.True(t, got.Equal(&want), "pieces of %d: %v", step, got.Diff(&want))
		}
	})
	t.Run("rejected frames past the budget change nothing", func(t *testing.T) {
		torn := wire.AppendFrame(nil, wire.Stimulus, []byte("x"))
		torn[len(torn)-1] ^= 1
		h := newHarness()
		h.feed(fillBudget())
		h.feed(torn)
		h.feed(frameWithPad(wire.SchedExit, []byte{1, 0, 0, 0}, 1))
		o := h.s.Finish()
		assert.Zero(t, o.VerdictsDropped)
		assert.False(t, o.Killed)
		assert.Equal(t, dispatch.EmptyDigest(), o.VerdictsDroppedSHA256)
		assert.EqualValues(t, 1, o.Rejected.CRC)
		assert.EqualValues(t, 1, o.Rejected.Pad)
	})
	t.Run("internal frames never spend the budget", func(t *testing.T) {
		h := newHarness()
		h.feed(bytes.Repeat(wire.AppendFrame(nil, wire.Step, []byte{1, 0}), dispatch.MaxVerdicts+10))
		h.feed(wire.AppendFrame(nil, wire.Stimulus, nil))
		o := h.s.Finish()
		assert.Len(t, o.Verdicts, 1)
		assert.Zero(t, o.VerdictsDropped)
	})
}

// TestSessionMemoryIsBounded: a flood of intact verdict frames far past
// the budget leaves the Session holding what the budget allows, and
// steady-state feeding past it allocates nothing.
func TestSessionMemoryIsBounded(t *testing.T) {
	h := newHarness()
	h.feed(fillBudget())
	flood := bytes.Repeat(wire.AppendFrame(nil, wire.Stimulus, nil), 1<<16)
	allocs := testing.AllocsPerRun(20, func() { h.s.Feed(0, flood, nil) })
	assert.Zero(t, allocs, "allocations per 64 Ki dropped verdicts")
	o := h.s.Finish()
	assert.Len(t, o.Verdicts, dispatch.MaxVerdicts)
	assert.LessOrEqual(t, cap(o.Verdicts), 2*dispatch.MaxVerdicts)
	assert.EqualValues(t, 21<<16, o.VerdictsDropped)
	// Control: below the budget each verdict is an entry.
	c := newHarness()
	c.feed(bytes.Repeat(wire.AppendFrame(nil, wire.Stimulus, nil), 100))
	assert.Len(t, c.s.Finish().Verdicts, 100)
}

// TestFeedJoinedClocksByDelivery: a piece joining several deliveries
// stamps each frame with the time of the delivery holding its last byte,
// as separate feeds do.
func TestFeedJoinedClocksByDelivery(t *testing.T) {
	f := wire.AppendFrame(nil, wire.Stimulus, []byte("0123"))
	stream := bytes.Repeat(f, 4) // frames end at 19, 39, 59, 79
	deliveries := []struct {
		off  int
		time int64
	}{{0, 10}, {30, 20}, {40, 30}, {70, 40}}
	var want []int64
	sep := dispatch.NewSession()
	for i, d := range deliveries {
		end := len(stream)
		if i+1 < len(deliveries) {
			end = deliveries[i+1].off
		}
		sep.Feed(d.time, stream[d.off:end], func(m *dispatch.Message, _ dispatch.Result) { want = append(want, m.Time) })
	}
	require.Equal(t, []int64{10, 20, 30, 40}, want, "control: separate feeds")

	var got []int64
	marks := make([]dispatch.Mark, len(deliveries))
	for i, d := range deliveries {
		marks[i] = dispatch.Mark{Off: d.off - 5, Time: d.time}
	}
	marks[0].Off = 0
	j := dispatch.NewSession()
	j.Feed(10, stream[:5], nil)
	j.FeedJoined(stream[5:], marks, func(m *dispatch.Message, _ dispatch.Result) { got = append(got, m.Time) })
	assert.Equal(t, want, got)
	a, b := sep.Finish(), j.Finish()
	assert.True(t, a.Equal(&b))
}
