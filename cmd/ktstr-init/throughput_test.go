package main

import (
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestThroughputReportsWhatItWrote: every byte the scenario counts is an
// intact SOUT frame on the port, and the TEST result's byte count equals
// the SOUT bytes the host would receive.
func TestThroughputReportsWhatItWrote(t *testing.T) {
	var port syncBuffer
	cfg := defaultConfig()
	cfg.Duration = 30 * time.Millisecond
	a := newAgent(cfg, &port, io.Discard)
	status, err := runThroughput(context.Background(), a)
	require.NoError(t, err)
	assert.Equal(t, 0, status)

	var soutBytes int64
	var test map[string]any
	for _, f := range frames(t, port.Bytes()) {
		require.True(t, f.intact, "%v frame is intact", f.tag)
		switch f.tag {
		case wire.Stdout:
			soutBytes += int64(wire.HeaderSize + len(f.payload))
		case wire.TestResult:
			require.NoError(t, json.Unmarshal([]byte(f.payload), &test))
		}
	}
	require.NotNil(t, test, "a TEST result was sent")
	assert.Positive(t, soutBytes)
	assert.Equal(t, float64(soutBytes), test["bytes"])
	assert.Equal(t, true, test["pass"])
	assert.Positive(t, test["mb_per_s"])
}

// TestThroughputStopsOnPortError: a failing port ends the scenario with
// the error instead of spinning.
func TestThroughputStopsOnPortError(t *testing.T) {
	cfg := defaultConfig()
	cfg.Duration = time.Hour
	a := newAgent(cfg, failWriter{}, io.Discard)
	status, err := runThroughput(context.Background(), a)
	assert.Error(t, err)
	assert.Equal(t, 1, status)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
