package trace

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/fuzz/internal/seeds"
	"github.com/ktstr/ktstr/internal/libfuzzer"
	"github.com/ktstr/ktstr/replay"
)

// readerCallAllocBound is the most heap one NewReader or Next call may
// allocate. The Reader documents that it holds at most one record body
// (MaxRecordSize) and the zstd window (MaxWindow). Growing the body
// buffer as a body arrives allocates about three times the body (2.9×
// measured for a 16 MiB DATA record: the buffer doubles), a record's
// name or END outcome copies part of the body, the metadata is at most
// MaxMetaSize, and the decoder's window and block buffers are counted
// four times over; the rest is slack for error strings and JSON. A call
// past it allocates by something other than the bytes it was given,
// which is what a declared length trusted too early looks like.
const readerCallAllocBound = 4*capture.MaxRecordSize + 2*capture.MaxMetaSize + 4*capture.MaxWindow + 8<<20

// FuzzTraceReader gives arbitrary bytes as a trace file to its two
// consumers: capture.Reader (NewReader, then Next to the end) and
// replay.Trace (the Reader, its decoding goroutine, the Assembler and
// Dispatch behind it). Neither may panic. Every Reader error wraps
// exactly one of ErrCorrupt, ErrTruncated and ErrVersion, and every
// Trace error wraps ErrBadTrace, each on one line. Memory stays within
// the Reader's bounds: no record exceeds the format's (MaxDataSize,
// MaxRecordSize) and no call allocates past readerCallAllocBound. The
// two consumers agree: Trace fails exactly when the Reader reports
// damage or the END record's outcome is not an Outcome, and otherwise
// replays exactly the TX bulk-port deliveries the Reader returned,
// noting a truncation exactly when the Reader met one. Whatever the
// file holds, replaying it breaks no invariant (a recorded outcome that
// does not match is a mismatch, not a violation). With compressIt the
// bytes are first wrapped in a zstd frame so the fuzzer reaches past
// the zstd layer into the records.
func FuzzTraceReader(f *testing.F) {
	files, err := seeds.TraceFiles()
	require.NoError(f, err)
	for _, b := range files {
		for _, s := range traceVariants(b) {
			f.Add(s, false)
		}
		if raw, err := zstdDecode(b); err == nil {
			f.Add(raw, true)
			f.Add(raw[:len(raw)*3/4], true)
		}
	}
	if libfuzzer.Enabled() {
		f.Add([]byte{}, false)
		f.Add([]byte("KTSTRTRC\x01\x00\x00\x00\x02\x00\x00\x00{}"), true)
	}
	// Made at the first compressIt input and kept: a libFuzzer build
	// runs this whole function, this line included, once per input.
	var enc *zstd.Encoder
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, data []byte, compressIt bool) {
		if export != nil {
			export(t, data, compressIt)
		}
		if compressIt {
			if enc == nil {
				var err error
				enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
				require.NoError(t, err)
			}
			data = enc.EncodeAll(data, nil)
		}
		if p := checkTrace(data); len(p) > 0 {
			t.Fatalf("%d problem(s) with a %d-byte trace:\n  %s", len(p), len(data), strings.Join(p, "\n  "))
		}
	})
}

// traceVariants returns b and a few damaged copies of it: truncations
// (inside the header, inside a frame, one byte short) and bit flips
// (in the zstd frame header, in the middle, near the end).
func traceVariants(b []byte) [][]byte {
	out := [][]byte{b}
	for _, n := range []int{1, 7, 17, len(b) / 3, len(b) / 2, len(b) - 1} {
		if n > 0 && n < len(b) {
			out = append(out, b[:n])
		}
	}
	for _, at := range []int{5, len(b) / 3, len(b) * 2 / 3, len(b) - 5} {
		if at >= 0 && at < len(b) {
			flipped := bytes.Clone(b)
			flipped[at] ^= 0x10
			out = append(out, flipped)
		}
	}
	return out
}

// readerView is what a plain read of a trace with capture.Reader saw.
type readerView struct {
	err        error // nil at a clean end, else the error Next or NewReader returned
	atOpen     bool  // NewReader returned err: there is nothing to replay
	deliveries int   // TX bulk-port DATA records
	bytes      int64 // their bytes
	end        *capture.End
}

// checkTrace runs one FuzzTraceReader input and returns the problems.
func checkTrace(data []byte) []string {
	view, p := readTrace(data)
	rep, err := replay.Trace(bytes.NewReader(data), "fuzz", replay.Options{})
	return append(p, compareReplay(view, rep, err)...)
}

// readTrace reads every record of a trace file with capture.Reader,
// checking each call's error and allocations and each record's size.
func readTrace(data []byte) (readerView, []string) {
	var v readerView
	var p []string
	var r *capture.Reader
	var err error
	p = append(p, allocCheck("NewReader", func() { r, err = capture.NewReader(bytes.NewReader(data)) })...)
	v.atOpen = err != nil
	for err == nil {
		var rec capture.Record
		p = append(p, allocCheck("Next", func() { rec, err = r.Next() })...)
		if err != nil {
			break
		}
		if len(rec.Data) > capture.MaxDataSize || len(rec.Detail) > capture.MaxRecordSize || len(rec.Name) > capture.MaxRecordSize {
			p = append(p, fmt.Sprintf("a %s record past the format's bounds: %d data bytes, %d detail bytes, %d name bytes", rec.Kind, len(rec.Data), len(rec.Detail), len(rec.Name)))
		}
		switch rec.Kind {
		case capture.KindData:
			if rec.Dir == capture.TX && rec.Port == capture.BulkPort {
				v.deliveries++
				v.bytes += int64(len(rec.Data))
			}
		case capture.KindEnd:
			v.end = rec.End
			if len(rec.End.Outcome) > capture.MaxRecordSize {
				p = append(p, fmt.Sprintf("an END outcome of %d bytes, past the format's bound", len(rec.End.Outcome)))
			}
		}
	}
	if !errors.Is(err, io.EOF) {
		v.err = err
		if msg := classify(err); msg != "" {
			p = append(p, msg)
		}
	}
	return v, p
}

// allocCheck runs call and reports it if it allocated more than
// readerCallAllocBound bytes.
func allocCheck(name string, call func()) []string {
	before := heapAllocated()
	call()
	if n := heapAllocated() - before; n > readerCallAllocBound {
		return []string{fmt.Sprintf("one %s call allocated %d bytes, past the Reader's bound of %d", name, n, readerCallAllocBound)}
	}
	return nil
}

// heapAllocated returns the bytes allocated on the heap since the
// process started. runtime/metrics reads it without stopping the world,
// unlike runtime.ReadMemStats, so checking every call costs little.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// readerErrors are the Reader's documented error kinds.
var readerErrors = []error{capture.ErrCorrupt, capture.ErrTruncated, capture.ErrVersion}

// kindOf returns the first of readerErrors that err wraps, or nil.
func kindOf(err error) error {
	for _, kind := range readerErrors {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return nil
}

// classify returns "" when err wraps exactly one of the Reader's
// documented error kinds and fits on one line, else what is wrong.
func classify(err error) string {
	n := 0
	for _, kind := range readerErrors {
		if errors.Is(err, kind) {
			n++
		}
	}
	switch {
	case n != 1:
		return fmt.Sprintf("a reader error that wraps %d of ErrCorrupt, ErrTruncated and ErrVersion: %v", n, err)
	case strings.Contains(err.Error(), "\n"):
		return "a multi-line reader error: " + err.Error()
	}
	return ""
}

// compareReplay checks what replay.Trace made of a trace against what
// the plain read saw.
func compareReplay(v readerView, rep *replay.Report, err error) []string {
	// A trace whose header cannot be read cannot be replayed at all; one
	// cut later replays up to the cut.
	damaged := v.err != nil && (v.atOpen || !errors.Is(v.err, capture.ErrTruncated))
	badEnd := false
	if v.end != nil && len(v.end.Outcome) > 0 {
		var o dispatch.Outcome
		badEnd = json.Unmarshal(v.end.Outcome, &o) != nil
	}
	if err != nil {
		var p []string
		if !errors.Is(err, replay.ErrBadTrace) || strings.Contains(err.Error(), "\n") {
			p = append(p, fmt.Sprintf("a replay error that is not a one-line ErrBadTrace: %v", err))
		}
		if !damaged && !badEnd {
			p = append(p, fmt.Sprintf("replay fails on a trace the Reader read (to %v): %v", orEOF(v.err), err))
		}
		if damaged && !errors.Is(err, kindOf(v.err)) {
			p = append(p, fmt.Sprintf("replay fails with %q, not with the Reader's kind of error, %q", err, v.err))
		}
		return p
	}
	var p []string
	if damaged || badEnd {
		p = append(p, fmt.Sprintf("replay accepts a trace the Reader rejects (%v) or whose END outcome is not an Outcome (%v)", orEOF(v.err), badEnd))
	}
	if rep.Deliveries != v.deliveries || rep.Bytes != v.bytes {
		p = append(p, fmt.Sprintf("replay fed %d deliveries, %d bytes; the Reader returned %d, %d", rep.Deliveries, rep.Bytes, v.deliveries, v.bytes))
	}
	if (rep.Truncation != nil) != errors.Is(v.err, capture.ErrTruncated) {
		p = append(p, fmt.Sprintf("replay notes truncation %v, the Reader ended with %v", rep.Truncation, orEOF(v.err)))
	}
	if (rep.End != nil) != (v.end != nil) {
		p = append(p, fmt.Sprintf("replay saw an END record: %v; the Reader: %v", rep.End != nil, v.end != nil))
	}
	if len(rep.Violations) > 0 {
		p = append(p, "replaying the trace broke invariants: "+strings.Join(rep.Violations, "; "))
	}
	return p
}

func orEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

func zstdDecode(b []byte) ([]byte, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(b, nil)
}

// TestTraceReaderOracle: the checks FuzzTraceReader applies pass the
// checked-in traces and their damaged copies.
func TestTraceReaderOracle(t *testing.T) {
	files, err := seeds.TraceFiles()
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, b := range files {
		view, p := readTrace(b)
		require.Empty(t, p)
		require.NoError(t, view.err)
		require.NotZero(t, view.deliveries)
		for i, d := range traceVariants(b) {
			assert.Empty(t, checkTrace(d), "variant %d (%d bytes)", i, len(d))
		}
	}
}

// TestTraceReaderOracleCatches is the positive control of
// FuzzTraceReader's checks: each case feeds them a known-bad result
// and they must say so.
func TestTraceReaderOracleCatches(t *testing.T) {
	files, err := seeds.TraceFiles()
	require.NoError(t, err)
	require.NotEmpty(t, files)
	good := files[0]
	view, p := readTrace(good)
	require.Empty(t, p)
	rep, err := replay.Trace(bytes.NewReader(good), "seed", replay.Options{})
	require.NoError(t, err)
	require.Empty(t, compareReplay(view, rep, nil), "negative: the real replay agrees")

	corrupt := fmt.Errorf("capture: %w: damaged", capture.ErrCorrupt)
	tests := []struct {
		name  string
		got   func() []string
		catch string
	}{
		{"an unclassified reader error", func() []string { return []string{classify(errors.New("some other error"))} }, "wraps 0"},
		{"a reader error of two kinds", func() []string { return []string{classify(errors.Join(capture.ErrCorrupt, capture.ErrTruncated))} }, "wraps 2"},
		{"a multi-line reader error", func() []string {
			return []string{classify(fmt.Errorf("%w: first\nsecond", capture.ErrCorrupt))}
		}, "multi-line"},
		{"an allocation past the bound", func() []string {
			return allocCheck("Next", func() { runtime.KeepAlive(make([]byte, readerCallAllocBound+1)) })
		}, "past the Reader's bound"},
		{"a replay error without ErrBadTrace", func() []string {
			return compareReplay(readerView{err: corrupt}, nil, corrupt)
		}, "not a one-line ErrBadTrace"},
		{"a replay failing on a good trace", func() []string {
			return compareReplay(view, nil, fmt.Errorf("%w: invented", replay.ErrBadTrace))
		}, "replay fails on a trace the Reader read"},
		{"a replay accepting a damaged trace", func() []string {
			return compareReplay(readerView{err: corrupt}, rep, nil)
		}, "replay accepts a trace the Reader rejects"},
		{"a replay losing a delivery", func() []string {
			v := view
			v.deliveries++
			return compareReplay(v, rep, nil)
		}, "deliveries"},
		{"a replay missing the truncation", func() []string {
			v := view
			v.err = fmt.Errorf("capture: %w: cut", capture.ErrTruncated)
			return compareReplay(v, rep, nil)
		}, "truncation"},
		{"a replay breaking an invariant", func() []string {
			r := *rep
			r.Violations = []string{"invariant 1: a torn frame took effect"}
			return compareReplay(view, &r, nil)
		}, "broke invariants"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(tt.got(), "\n")
			assert.Contains(t, got, tt.catch)
		})
	}
}
