package tracetool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// realTraces are the recorded runs checked in under corpus/real.
func realTraces(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "corpus", "real", "*.zst"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "corpus/real is missing")
	return paths
}

func frame(tag wire.Tag, p []byte) []byte { return wire.AppendFrame(nil, tag, p) }

// torn returns an intact frame with its crc field flipped.
func torn(tag wire.Tag, p []byte) []byte {
	b := frame(tag, p)
	b[8] ^= 0xff
	return b
}

// padded returns a frame with a non-zero pad field and a valid crc.
func padded(tag wire.Tag, p []byte) []byte {
	b := frame(tag, p)
	binary.LittleEndian.PutUint32(b[12:], 1)
	return b
}

func snrq(id uint32) []byte {
	r := wire.NewSnapshotRequest(id, 1, "t")
	p, _ := r.AppendBinary(nil)
	return frame(wire.SnapshotRequest, p)
}

// oversizeHeader returns a header declaring more than MaxPayload.
func oversizeHeader() []byte {
	h := frame(wire.Stimulus, nil)
	binary.LittleEndian.PutUint32(h[4:], wire.MaxPayload+1)
	return h
}

// streamOf makes a stream of one delivery per argument, 1 µs apart.
func streamOf(deliveries ...[]byte) *replay.Stream {
	s := &replay.Stream{}
	for i, d := range deliveries {
		s.Append(int64(i+1)*1000, d)
	}
	return s
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// outcomeOf replays s and returns its outcome.
func outcomeOf(s *replay.Stream) dispatch.Outcome {
	sess := dispatch.NewSession()
	for i := range s.Deliveries() {
		sess.Feed(s.Times[i], s.Delivery(i), nil)
	}
	return sess.Finish()
}

// writeTrace writes s as a trace in dir, with END holding outcome (nil:
// no END record) and the given events, and returns its path.
func writeTrace(t testing.TB, dir, name string, meta capture.Meta, s *replay.Stream, outcome *dispatch.Outcome, events ...capture.Record) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	require.NoError(t, err)
	w, err := capture.NewWriter(f, meta)
	require.NoError(t, err)
	for _, e := range events {
		switch e.Kind {
		case capture.KindEvent:
			require.NoError(t, w.WriteEvent(e.TimeNS, e.Name, e.Detail))
		case capture.KindData:
			require.NoError(t, w.WriteData(e.Dir, e.Port, e.TimeNS, e.Data))
		}
	}
	for i := range s.Deliveries() {
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, s.Times[i], s.Delivery(i)))
	}
	if outcome != nil {
		js, err := json.Marshal(outcome)
		require.NoError(t, err)
		var last int64
		if n := len(s.Times); n > 0 {
			last = s.Times[n-1]
		}
		require.NoError(t, w.WriteEnd(capture.End{TimeNS: last + 1000, Reason: "test", Outcome: js}))
	}
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	return path
}

// load reads a trace file whole.
func load(t testing.TB, path string) *Loaded {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	l, err := Load(f, path, DefaultLoadLimit)
	require.NoError(t, err)
	return l
}
