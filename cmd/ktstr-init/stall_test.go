package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestStallTricklesUntilCancelled: the stall scenario sends SCST and an
// SCPP, then one byte of an SOUT frame per interval, never more, and
// returns only when its context ends (the real agent never cancels it:
// the guest never powers off). Enough bytes make the frame whole and
// intact, which shows they come in order.
func TestStallTricklesUntilCancelled(t *testing.T) {
	var port syncBuffer
	a := newAgent(defaultConfig(), &port, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	status, err := stall(ctx, a, time.Millisecond)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "it stops only when its context ends")
	assert.Equal(t, 1, status)

	asm := dispatch.NewAssembler()
	asm.Feed(port.Bytes())
	var tags []wire.Tag
	for {
		m, ok := asm.Next()
		if !ok {
			break
		}
		tags = append(tags, m.Tag)
		if m.Tag == wire.Stdout {
			assert.True(t, m.Intact(), "the trickled bytes arrive in order")
			assert.Equal(t, "ktstr-init: stalled\n", string(m.Payload))
		}
	}
	require.GreaterOrEqual(t, len(tags), 3, "SCST, SCPP and at least one trickled frame")
	assert.Equal(t, []wire.Tag{wire.ScenarioStart, wire.WatchdogPause, wire.Stdout}, tags[:3])
}
