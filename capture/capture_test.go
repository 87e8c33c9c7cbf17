package capture

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testMeta is metadata with every field set.
func testMeta() Meta {
	return Meta{
		ToolVersion:   "ktstr 0.1.0-test",
		KernelPath:    "/cache/vmlinuz-6.12.9-cloud-amd64",
		KernelRelease: "6.12.9+deb13-cloud-amd64",
		KernelSHA256:  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Backend:       "qemu",
		Accel:         "tcg",
		CPUs:          2,
		MemoryMiB:     512,
		Scenario:      "cpu-spread",
		CommandLine:   []string{"ktstr", "record", "--scenario", "cpu-spread"},
		StartTime:     time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.UTC),
		Extra:         map[string]string{"host": "ci-7"},
	}
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// readAll reads every record of a trace, copying the slices so they
// outlive the next call, and returns them with the error that ended
// reading (io.EOF for a clean end).
func readAll(t testing.TB, trace []byte) (Meta, []Record, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(trace))
	if err != nil {
		return Meta{}, nil, err
	}
	var recs []Record
	for {
		rec, err := r.Next()
		if err != nil {
			return r.Meta(), recs, err
		}
		rec.Data = bytes.Clone(rec.Data)
		rec.Detail = bytes.Clone(rec.Detail)
		recs = append(recs, rec)
	}
}

// writeRecords writes recs (as read back by a Reader) with w.
func writeRecords(w *Writer, recs []Record) error {
	for _, rec := range recs {
		var err error
		switch rec.Kind {
		case KindData:
			err = w.WriteData(rec.Dir, rec.Port, rec.TimeNS, rec.Data)
		case KindEvent:
			err = w.WriteEvent(rec.TimeNS, rec.Name, rec.Detail)
		case KindEnd:
			err = w.WriteEnd(*rec.End)
		default:
			err = errors.New("unexpected kind " + rec.Kind.String())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sampleRecords returns one of each record kind, with empty and
// maximum-size deliveries when big is set.
func sampleRecords(big bool) []Record {
	recs := []Record{
		{Kind: KindData, Dir: TX, Port: BulkPort, TimeNS: 1000, Data: []byte("SRDY frame bytes")},
		{Kind: KindData, Dir: TX, Port: BulkPort, TimeNS: 1001, Data: []byte{}},
		{Kind: KindData, Dir: RX, Port: 0xFFFF, TimeNS: 2000, Data: randBytes(1, 4096)},
		{Kind: KindEvent, TimeNS: 3000, Name: "sys_rdy"},
		{Kind: KindEvent, TimeNS: 4000, Name: "snapshot", Detail: json.RawMessage(`{"request_id":7,"regs":{"rip":"0xffffffff81000000"}}`)},
		{Kind: KindData, Dir: TX, Port: 0, TimeNS: -5, Data: []byte{0}},
	}
	if big {
		recs = append(recs, Record{Kind: KindData, Dir: TX, Port: BulkPort, TimeNS: 5000, Data: randBytes(2, MaxDataSize)})
	}
	return append(recs, Record{Kind: KindEnd, TimeNS: 9000, End: &End{
		TimeNS: 9000, ExitStatus: 1, Reason: "sched_exit",
		Outcome: json.RawMessage(`{"killed":true,"kill_signals":1}`),
	}})
}

func TestRoundTrip(t *testing.T) {
	for _, big := range []bool{false, true} {
		want := sampleRecords(big)
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testMeta())
		require.NoError(t, err)
		require.NoError(t, writeRecords(w, want))
		require.NoError(t, w.Close())

		meta, got, err := readAll(t, buf.Bytes())
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
	meta, recs, err := readAll(t, buf.Bytes())
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
	_, recs, err := readAll(t, again)
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
