package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestConsoleFloodReportsWhatItPrinted: the scenario's TEST counts the
// bytes of its numbered lines on the console, and its last console line
// says so too.
func TestConsoleFloodReportsWhatItPrinted(t *testing.T) {
	var port syncBuffer
	var console bytes.Buffer
	cfg := defaultConfig()
	cfg.Duration = 30 * time.Millisecond
	a := newAgent(cfg, &port, &console)
	status, err := runConsoleFlood(context.Background(), a, &console)
	require.NoError(t, err)
	assert.Equal(t, 0, status)

	var test map[string]any
	for _, f := range frames(t, port.Bytes()) {
		require.True(t, f.intact)
		if f.tag == wire.TestResult {
			require.NoError(t, json.Unmarshal([]byte(f.payload), &test))
		}
	}
	require.NotNil(t, test, "a TEST result was sent")
	assert.Equal(t, true, test["pass"])
	lines := strings.Split(strings.TrimSpace(console.String()), "\n")
	require.Greater(t, len(lines), 10, "it printed")
	last := lines[len(lines)-1]
	assert.True(t, strings.HasPrefix(last, "ktstr-init: console-flood wrote "), last)
	printed := int64(console.Len() - len(last) - 1)
	assert.Equal(t, float64(printed), test["console_bytes"])
	assert.True(t, strings.HasPrefix(lines[0], "console-flood line 0 "), lines[0])
}

// TestConsoleFloodStopsOnConsoleError: a console that fails ends the
// scenario with the error rather than spinning (control: the test above).
func TestConsoleFloodStopsOnConsoleError(t *testing.T) {
	cfg := defaultConfig()
	cfg.Duration = time.Hour
	a := newAgent(cfg, io.Discard, io.Discard)
	status, err := runConsoleFlood(context.Background(), a, failWriter{})
	assert.Error(t, err)
	assert.Equal(t, 1, status)
}
