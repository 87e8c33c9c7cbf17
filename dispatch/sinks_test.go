package dispatch_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// dispatchAll feeds stream to a and dispatches every frame into s.
func dispatchAll(a *dispatch.Assembler, s *dispatch.Sinks, stream []byte) {
	a.Feed(stream)
	for {
		m, ok := a.Next()
		if !ok {
			return
		}
		dispatch.Dispatch(&m, s)
	}
}

// TestVerdictPayloadsAreIndependentCopies: verdict payloads share
// storage, yet each holds its own frame's bytes, outlives the fed
// buffer, and cannot be overwritten through another's append.
func TestVerdictPayloadsAreIndependentCopies(t *testing.T) {
	sizes := []int{0, 1, 100, 4096, 5000, 65536, 70000, 3}
	var stream []byte
	var want [][]byte
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		want = append(want, p)
		stream = wire.AppendFrame(stream, wire.Stdout, p)
	}
	s := dispatch.NewSinks(nil)
	dispatchAll(dispatch.NewAssembler(), s, stream)
	clear(stream) // the caller reuses its read buffer

	v := s.Outcome.Verdicts
	require.Len(t, v, len(sizes))
	for i := range v {
		require.NotNil(t, v[i].Payload, "verdict %d kept no payload", i)
		assert.Equal(t, want[i], v[i].Payload, "verdict %d", i)
		assert.Equal(t, len(v[i].Payload), cap(v[i].Payload), "verdict %d: payload capacity reaches into the next", i)
	}
	v[1].Payload = append(v[1].Payload, "overwrite"...)
	assert.Equal(t, want[2], v[2].Payload, "an append to one payload changed the next")
}

// TestReleaseVerdictsReusesStorage: after ReleaseVerdicts the bucket is
// empty and a steady stream of verdicts allocates nothing; without it
// (the control) every verdict's copy is new memory.
func TestReleaseVerdictsReusesStorage(t *testing.T) {
	for _, size := range []int{64, 4096, 65536} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			batch := bytes.Repeat(wire.AppendFrame(nil, wire.Stimulus, bytes.Repeat([]byte{7}, size)), 8)
			a := dispatch.NewAssembler()
			s := dispatch.NewSinks(nil)
			dispatchAll(a, s, batch)
			require.Len(t, s.Outcome.Verdicts, 8)
			s.ReleaseVerdicts()
			assert.Empty(t, s.Outcome.Verdicts)
			// Warm up to the largest chunk, then measure.
			for range 20 {
				dispatchAll(a, s, batch)
				s.ReleaseVerdicts()
			}
			released := testing.AllocsPerRun(50, func() {
				dispatchAll(a, s, batch)
				s.ReleaseVerdicts()
			})
			assert.Zero(t, released, "allocations per batch of 8 verdicts with ReleaseVerdicts")

			// Control: without ReleaseVerdicts nothing is reused; every
			// payload of every batch is still held.
			kept := dispatch.NewSinks(nil)
			for range 51 {
				dispatchAll(a, kept, batch)
			}
			var total uint64
			for i := range kept.Outcome.Verdicts {
				total += uint64(cap(kept.Outcome.Verdicts[i].Payload))
			}
			assert.EqualValues(t, 51*8*size, total, "without ReleaseVerdicts every payload is kept")
			assert.Equal(t, bytes.Repeat([]byte{7}, size), kept.Outcome.Verdicts[0].Payload)
		})
	}
}
