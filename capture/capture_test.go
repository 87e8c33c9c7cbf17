package capture

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	for _, big := range []bool{false, true} {
		want := sampleRecords(big)
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testMeta())
		require.NoError(t, err)
		require.NoError(t, writeRecords(w, want))
		require.NoError(t, w.Close())

		meta, got, err := readAll(buf.Bytes())
		require.ErrorIs(t, err, io.EOF)
		assert.True(t, testMeta().StartTime.Equal(meta.StartTime))
		meta.StartTime = testMeta().StartTime
		assert.Equal(t, testMeta(), meta)
		require.Len(t, got, len(want))
		for i := range want {
			assert.Equal(t, want[i], got[i], "record %d", i)
		}
	}
}

func TestRoundTripEmptyTrace(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Meta{})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	meta, recs, err := readAll(buf.Bytes())
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, Meta{}, meta)
	assert.Empty(t, recs)
}

// TestZstdCLI checks that the zstd command line decodes a trace to the
// documented stream: magic, version, metadata, records.
func TestZstdCLI(t *testing.T) {
	zstdcat, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd command not installed (apt-get install zstd)")
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testMeta())
	require.NoError(t, err)
	require.NoError(t, w.WriteData(TX, BulkPort, 42, []byte("hello")))
	require.NoError(t, w.WriteEvent(43, "sys_rdy", nil))
	require.NoError(t, w.WriteData(TX, BulkPort, 44, []byte("world")))
	require.NoError(t, w.Close())

	cmd := exec.Command(zstdcat, "-dc")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.Output()
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(out, []byte(Magic+"\x01\x00\x00\x00")), "decompressed stream starts %q", out[:min(len(out), 16)])
	mj, err := json.Marshal(testMeta())
	require.NoError(t, err)
	assert.Equal(t, mj, out[16:16+len(mj)])
	rest := out[16+len(mj):]
	// First DATA record: kind 1, length 11+5, TX, port 1, time 42, "hello".
	assert.Equal(t, []byte{1, 16, 0, 0, 0, 1, 1, 0, 42, 0, 0, 0, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'}, rest[:21])
	assert.True(t, bytes.HasSuffix(out, []byte("world")))

	// The CLI's own re-compression (one frame, default level) reads too.
	cmd = exec.Command(zstdcat, "-c", "-19")
	cmd.Stdin = bytes.NewReader(out)
	again, err := cmd.Output()
	require.NoError(t, err)
	_, recs, err := readAll(again)
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, recs, 3)
	assert.Equal(t, "world", string(recs[2].Data))
}

// childEnv names the environment variable that makes the test binary a
// trace-writing child for TestKilledWriter.
const childEnv = "KTSTR_CAPTURE_CHILD_TRACE"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}
