package fuzz

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/replay"
)

// FuzzTraceReader gives arbitrary bytes to the two consumers of a trace
// file: capture.Reader and replay.Trace (the reader, the decoding
// goroutine, the Assembler and Dispatch behind it). Neither may panic;
// every error must be one of the documented kinds on one line; no record
// may exceed the format's bound; and whatever the file holds, replaying
// it breaks no invariant (a recorded outcome that does not match is a
// mismatch, not a violation). With compressIt the bytes are first
// wrapped in a zstd frame so the fuzzer reaches past the zstd layer.
func FuzzTraceReader(f *testing.F) {
	for _, b := range seedTraceFiles(f) {
		f.Add(b, false)
		f.Add(b[:len(b)/2], false)
		flipped := bytes.Clone(b)
		flipped[len(flipped)*2/3] ^= 0x10
		f.Add(flipped, false)
		if raw, err := zstdDecode(b); err == nil {
			f.Add(raw, true)
		}
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte, compressIt bool) {
		if compressIt {
			data = enc.EncodeAll(data, nil)
		}
		if err := readTrace(data); err != nil {
			t.Fatal(err)
		}
		rep, err := replay.Trace(bytes.NewReader(data), "fuzz", replay.Options{})
		if err != nil {
			if !errors.Is(err, replay.ErrBadTrace) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("replay error is not a one-line bad-trace error: %v", err)
			}
			return
		}
		if len(rep.Violations) > 0 {
			t.Fatalf("replaying the trace broke invariants:\n  %s", strings.Join(rep.Violations, "\n  "))
		}
	})
}

// readTrace reads every record of a trace file and returns what is wrong
// with how the Reader behaved (nil when it behaved): a panic is left to
// the fuzzer.
func readTrace(data []byte) error {
	r, err := capture.NewReader(bytes.NewReader(data))
	if err != nil {
		return classified(err)
	}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return classified(err)
		}
		if len(rec.Data) > capture.MaxDataSize {
			return errors.New("a record holds more than capture.MaxDataSize bytes")
		}
		if len(rec.Detail) > capture.MaxRecordSize {
			return errors.New("an event detail exceeds capture.MaxRecordSize")
		}
	}
}

// classified returns nil when err is one of the Reader's documented
// error kinds and fits on one line, else an error saying it is not.
func classified(err error) error {
	for _, kind := range []error{capture.ErrCorrupt, capture.ErrTruncated, capture.ErrVersion} {
		if errors.Is(err, kind) {
			if strings.Contains(err.Error(), "\n") {
				return errors.New("multi-line reader error: " + err.Error())
			}
			return nil
		}
	}
	return errors.New("unclassified reader error: " + err.Error())
}

func zstdDecode(b []byte) ([]byte, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(b, nil)
}

// TestTraceReaderOracle: the checks FuzzTraceReader applies accept the
// checked-in traces and reject an unclassified error and an oversized
// record (positive controls).
func TestTraceReaderOracle(t *testing.T) {
	files := seedTraceFiles(t)
	require.NotEmpty(t, files)
	for _, b := range files {
		assert.NoError(t, readTrace(b))
		rep, err := replay.Trace(bytes.NewReader(b), "seed", replay.Options{})
		require.NoError(t, err)
		assert.Empty(t, rep.Violations)
		// Every truncation is classified.
		for _, n := range []int{0, 1, 7, len(b) / 3, len(b) - 1} {
			assert.NoError(t, readTrace(b[:n]), "truncated at %d", n)
		}
	}
	assert.Error(t, classified(errors.New("some other error")))
	assert.Error(t, classified(errors.Join(capture.ErrCorrupt, errors.New("second\nline"))))
	assert.NoError(t, classified(capture.ErrTruncated))
}
