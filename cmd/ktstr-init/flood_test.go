package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestFloodBufferIsIntactEmptyStim: the flood's write buffer is 64 KiB
// of back-to-back 16-byte STIM frames, each with len 0, the crc of the
// empty payload and pad 0, and the Assembler frames every one intact.
func TestFloodBufferIsIntactEmptyStim(t *testing.T) {
	buf := floodBuffer()
	require.Len(t, buf, floodBufferSize)
	for off := 0; off < len(buf); off += wire.HeaderSize {
		h, ok := wire.DecodeHeader(buf[off:])
		require.True(t, ok)
		require.Equal(t, wire.Header{Tag: wire.Stimulus, Len: 0, CRC: wire.Checksum(nil), Pad: 0}, h, "header at %d", off)
	}

	a := dispatch.NewAssembler()
	a.Feed(buf)
	n := 0
	for {
		m, ok := a.Next()
		if !ok {
			break
		}
		require.Equal(t, wire.Stimulus, m.Tag)
		require.Empty(t, m.Payload)
		require.True(t, m.Intact())
		require.Equal(t, int64(n*wire.HeaderSize), m.Offset)
		n++
	}
	st := a.Finish()
	assert.Equal(t, floodBufferSize/wire.HeaderSize, n)
	assert.Equal(t, int64(n), st.Frames)
	assert.Zero(t, st.Oversize)
	assert.Zero(t, st.ResyncBytes)
	assert.Zero(t, st.TruncatedTailBytes)
}

// assemble frames a whole stream with the real Assembler, calling each
// for every frame (its payload valid only during the call), and returns
// the stream stats. The stream must end on a frame boundary.
func assemble(t *testing.T, stream []byte, each func(m *dispatch.Message)) dispatch.Stats {
	t.Helper()
	a := dispatch.NewAssembler()
	a.Feed(stream)
	for {
		m, ok := a.Next()
		if !ok {
			break
		}
		each(&m)
	}
	st := a.Finish()
	require.Zero(t, st.TruncatedTailBytes, "stream ends on a frame boundary")
	return st
}

// floodEnd checks that a flood scenario's stream opens with its SCST and
// closes with the SCEN summary and an SCDX of status 0. It calls each
// for every frame in between and returns the summary, the number of
// those frames, their bytes, and the stats of the whole stream.
func floodEnd(t *testing.T, stream []byte, scen string, each func(m *dispatch.Message)) (sum floodSummary, frames, bytes int64, st dispatch.Stats) {
	t.Helper()
	var n int64
	assemble(t, stream, func(*dispatch.Message) { n++ })
	require.GreaterOrEqual(t, n, int64(3), "SCST, SCEN and SCDX at least")
	var i int64
	st = assemble(t, stream, func(m *dispatch.Message) {
		defer func() { i++ }()
		switch i {
		case 0:
			require.Equal(t, wire.ScenarioStart, m.Tag, "the stream opens with SCST")
			require.True(t, m.Intact())
			var start map[string]any
			require.NoError(t, json.Unmarshal(m.Payload, &start))
			assert.Equal(t, scen, start["scenario"])
		case n - 2:
			require.Equal(t, wire.Scenario, m.Tag, "the SCEN summary comes just before the SCDX")
			require.True(t, m.Intact())
			require.NoError(t, json.Unmarshal(m.Payload, &sum))
			var raw map[string]any
			require.NoError(t, json.Unmarshal(m.Payload, &raw))
			for _, k := range []string{"scenario", "frames", "bytes", "elapsed_ns"} {
				assert.Contains(t, raw, k)
			}
			assert.Equal(t, scen, sum.Scenario)
		case n - 1:
			require.Equal(t, wire.SchedExit, m.Tag, "the stream ends with SCDX")
			require.True(t, m.Intact())
			require.Len(t, m.Payload, 4)
			assert.Zero(t, binary.LittleEndian.Uint32(m.Payload), "SCDX status 0")
		default:
			each(m)
			frames++
			bytes += int64(wire.HeaderSize + len(m.Payload))
		}
	})
	return sum, frames, bytes, st
}

// TestFloodReportsWhatItWrote: between its SCST and its summary the
// flood scenario writes nothing but intact empty STIM frames, and the
// summary counts exactly those frames and bytes.
func TestFloodReportsWhatItWrote(t *testing.T) {
	var port syncBuffer
	cfg := defaultConfig()
	cfg.Duration = 20 * time.Millisecond
	a := newAgent(cfg, &port, io.Discard)
	status, err := runFlood(context.Background(), a)
	require.NoError(t, err)
	assert.Equal(t, 0, status)

	sum, frames, bytes, st := floodEnd(t, port.Bytes(), "flood", func(m *dispatch.Message) {
		if m.Tag != wire.Stimulus || len(m.Payload) != 0 || !m.Intact() {
			require.Failf(t, "not an intact empty STIM", "%v, %d bytes, intact %v", m.Tag, len(m.Payload), m.Intact())
		}
	})
	assert.Zero(t, st.Oversize)
	assert.Zero(t, st.ResyncBytes)
	assert.GreaterOrEqual(t, frames, int64(floodBufferSize/wire.HeaderSize), "at least one whole buffer")
	assert.Zero(t, frames%(floodBufferSize/wire.HeaderSize), "whole buffers only")
	assert.Equal(t, frames, sum.Frames)
	assert.Equal(t, bytes, sum.Bytes)
	assert.Equal(t, frames*wire.HeaderSize, sum.Bytes)
	assert.Positive(t, sum.ElapsedNS)
	assert.Zero(t, sum.Oversize)
	assert.Zero(t, sum.ResyncBytes)
}

// TestFloodWritesOnceEvenWhenDone: a cancelled run still floods one
// buffer and then ends with the summary and SCDX.
func TestFloodWritesOnceEvenWhenDone(t *testing.T) {
	var port syncBuffer
	cfg := defaultConfig()
	cfg.Duration = time.Hour
	a := newAgent(cfg, &port, io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	status, err := runFlood(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, 0, status)
	sum, frames, _, _ := floodEnd(t, port.Bytes(), "flood", func(*dispatch.Message) {})
	assert.Equal(t, int64(floodBufferSize/wire.HeaderSize), frames)
	assert.Equal(t, frames, sum.Frames)
}

// TestFloodStopsOnPortError: a failing port ends the scenario with the
// error instead of spinning.
func TestFloodStopsOnPortError(t *testing.T) {
	cfg := defaultConfig()
	cfg.Duration = time.Hour
	for _, run := range []func(context.Context, *agent) (int, error){runFlood, runFloodMixed} {
		a := newAgent(cfg, failWriter{}, io.Discard)
		status, err := run(context.Background(), a)
		assert.Error(t, err)
		assert.Equal(t, 1, status)
	}
}
