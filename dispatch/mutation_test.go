package dispatch_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// These tests pin behaviour that mutation testing (make mutation,
// docs/mutation.md) showed the other tests left loose.

// TestMessageIntactNeedsBoth: a frame is intact iff its crc matches AND
// its pad is zero (ARCHITECTURE §3).
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
