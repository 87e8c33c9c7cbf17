package tracetool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// readAll reads every frame of a trace.
func readAll(t testing.TB, src io.Reader, opt ReaderOptions) ([]Frame, *Reader) {
	t.Helper()
	r, err := NewReader(src, "t", opt)
	require.NoError(t, err)
	var fs []Frame
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return fs, r
		}
		require.NoError(t, err)
		fs = append(fs, *f)
	}
}

// TestReaderAgreesWithReplay: on every checked-in run the Reader frames
// what replay frames and ends with replay's outcome, the recorded one.
func TestReaderAgreesWithReplay(t *testing.T) {
	for _, path := range realTraces(t) {
		t.Run(path, func(t *testing.T) {
			f, err := os.Open(path)
			require.NoError(t, err)
			rep, err := replay.Trace(f, path, replay.Options{})
			f.Close()
			require.NoError(t, err)
			require.True(t, rep.Match)

			f, err = os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			frames, r := readAll(t, f, ReaderOptions{Digest: true, RX: true})
			var tx int64
			for _, fr := range frames {
				if fr.Dir == capture.TX {
					assert.Equal(t, tx, fr.Index)
					tx++
				}
			}
			assert.Equal(t, rep.Frames, tx)
			o := r.Outcome()
			assert.True(t, o.Equal(&rep.Outcome), "outcome: %v", o.Diff(&rep.Outcome))
			assert.Equal(t, rep.End.Reason, r.End().Reason)
			assert.Nil(t, r.Truncation())
		})
	}
}

// TestReaderSplitsLargeDeliveries: a delivery far larger than the
// Reader's piece gives the frames, clocks and outcome one Feed of it
// gives, whatever straddles the pieces.
func TestReaderSplitsLargeDeliveries(t *testing.T) {
	var big []byte
	for i := 0; len(big) < 5*piece; i++ {
		big = wire.AppendFrame(big, wire.Stimulus, bytes.Repeat([]byte{byte(i)}, 1+i*37%5000))
		if i%11 == 0 {
			big = append(big, torn(wire.SchedExit, []byte("xy"))...)
		}
	}
	big = append(big, frame(wire.SysRdy, nil)[:9]...) // and a truncated tail
	s := &replay.Stream{}
	s.Append(42, big)
	var buf bytes.Buffer
	require.NoError(t, WriteTrace(&buf, s, capture.Meta{}, nil))

	var want []Frame
	sess := dispatch.NewSession()
	sess.Feed(42, big, func(m *dispatch.Message, r dispatch.Result) {
		want = append(want, Frame{Index: int64(len(want)), Dir: capture.TX, Offset: m.Offset, Time: m.Time, Tag: m.Tag, Len: len(m.Payload), Intact: m.Intact(), Result: r})
	})
	wantOut := sess.Finish()

	got, r := readAll(t, &buf, ReaderOptions{})
	assert.Equal(t, want, got)
	o := r.Outcome()
	assert.True(t, o.Equal(&wantOut), "%v", o.Diff(&wantOut))
	assert.Positive(t, o.Rejected.TruncatedTailBytes, "the control: the tail is there to be counted")
}

// TestReaderErrors: a damaged trace is an error wrapping
// replay.ErrBadTrace, a truncated one is read up to its cut; a good
// trace (the control) is neither.
func TestReaderErrors(t *testing.T) {
	s := streamOf(frame(wire.SysRdy, nil), frame(wire.Stimulus, []byte("hello")))
	var good bytes.Buffer
	require.NoError(t, WriteTrace(&good, s, capture.Meta{}, &capture.End{Reason: "x", Outcome: []byte(`{"killed":false}`)}))
	var badEnd bytes.Buffer
	require.NoError(t, WriteTrace(&badEnd, s, capture.Meta{}, &capture.End{Reason: "x", Outcome: []byte(`{"killed":7}`)}))

	tests := []struct {
		name      string
		data      []byte
		bad       bool
		truncated bool
	}{
		{"good", good.Bytes(), false, false},
		{"garbage", []byte("not a trace at all"), true, false},
		{"empty", nil, true, false},
		{"end outcome not an outcome", badEnd.Bytes(), true, false},
		{"cut in the last frame", good.Bytes()[:good.Len()-3], false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.data), "t.zst", ReaderOptions{})
			for err == nil {
				_, err = r.Next()
			}
			if tt.bad {
				require.ErrorIs(t, err, replay.ErrBadTrace)
				assert.Contains(t, err.Error(), "t.zst: bad trace")
				return
			}
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, tt.truncated, r.Truncation() != nil)
		})
	}
}
