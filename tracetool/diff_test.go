package tracetool

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

func traceBytes(t testing.TB, s *replay.Stream) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, WriteTrace(&b, s, capture.Meta{}, nil))
	return b.Bytes()
}

func diffOf(t testing.TB, a, b []byte) *DiffResult {
	t.Helper()
	r, err := Diff(bytes.NewReader(a), bytes.NewReader(b), "A", "B", 2)
	require.NoError(t, err)
	return r
}

// TestDiff: each way two traces can differ is found at the right frame
// and named, with the outcome fields that differ; a trace against itself
// (and against a copy split and clocked otherwise) is the control: equal.
func TestDiff(t *testing.T) {
	srdy, stim := frame(wire.SysRdy, nil), frame(wire.Stimulus, []byte("abc"))
	base := streamOf(srdy, stim, frame(wire.Step, []byte{1, 0}), frame(wire.Exit, []byte{0}))
	resplit := &replay.Stream{}
	resplit.Append(5, cat(srdy, stim[:4]))
	resplit.Append(9, cat(stim[4:], frame(wire.Step, []byte{1, 0}), frame(wire.Exit, []byte{0})))

	tests := []struct {
		name    string
		b       *replay.Stream
		equal   bool
		index   int64
		differs []string
		fields  []string
	}{
		{"itself", base, true, 0, nil, nil},
		{"split and clocked otherwise", resplit, true, 0, nil, nil},
		{"payload", streamOf(srdy, frame(wire.Stimulus, []byte("abd")), frame(wire.Step, []byte{1, 0}), frame(wire.Exit, []byte{0})),
			false, 1, []string{"payload"}, []string{"verdicts"}},
		{"tag", streamOf(srdy, frame(wire.Stderr, []byte("abc")), frame(wire.Step, []byte{1, 0}), frame(wire.Exit, []byte{0})),
			false, 1, []string{"tag"}, []string{"verdicts"}},
		{"result", streamOf(srdy, stim, frame(wire.Step, []byte{1, 0, 0}), frame(wire.Exit, []byte{0})),
			false, 2, []string{"payload", "result"}, []string{"step", "rejected"}},
		{"torn", streamOf(srdy, torn(wire.Stimulus, []byte("abc")), frame(wire.Step, []byte{1, 0}), frame(wire.Exit, []byte{0})),
			false, 1, []string{"intact", "result"}, []string{"verdicts", "rejected"}},
		{"B ends early", streamOf(srdy, stim), false, 2, []string{"B ended"}, []string{"step", "verdicts"}},
		{"B goes on", streamOf(srdy, stim, frame(wire.Step, []byte{1, 0}), frame(wire.Exit, []byte{0}), frame(wire.Exit, []byte{0})),
			false, 4, []string{"A ended"}, []string{"verdicts"}},
	}
	a := traceBytes(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := diffOf(t, a, traceBytes(t, tt.b))
			assert.Equal(t, tt.equal, r.Equal)
			var fields []string
			for _, f := range r.Outcome {
				fields = append(fields, f.Field)
			}
			assert.Equal(t, tt.fields, fields)
			if tt.equal {
				assert.Nil(t, r.Divergence)
				return
			}
			require.NotNil(t, r.Divergence)
			assert.Equal(t, tt.index, r.Divergence.Index)
			assert.Equal(t, tt.differs, r.Divergence.Differs)
			assert.LessOrEqual(t, len(r.Divergence.Before), 2)
			assert.Len(t, r.Divergence.Before, int(min(tt.index, 2)), "the equal frames before it")
			js, err := json.Marshal(r)
			require.NoError(t, err)
			assert.Contains(t, string(js), `"divergence":{"index":`)
		})
	}
}

// TestDiffEnd: the same frames and outcome with another END reason (or
// none) differ, and the summary says how each run ended. Control: the
// same END reason on both is equal.
func TestDiffEnd(t *testing.T) {
	s := streamOf(frame(wire.SysRdy, nil), frame(wire.Exit, []byte{0}))
	ended := func(reason string) []byte {
		var b bytes.Buffer
		var end *capture.End
		if reason != "" {
			end = &capture.End{Reason: reason}
		}
		require.NoError(t, WriteTrace(&b, s, capture.Meta{}, end))
		return b.Bytes()
	}
	for _, tt := range []struct {
		a, b  string
		equal bool
	}{
		{"poweroff", "poweroff", true},
		{"poweroff", "guest_died", false},
		{"poweroff", "", false},
	} {
		t.Run(tt.a+" against "+tt.b, func(t *testing.T) {
			r := diffOf(t, ended(tt.a), ended(tt.b))
			assert.Equal(t, tt.equal, r.Equal)
			assert.Nil(t, r.Divergence, "the frames are the same")
			assert.Empty(t, r.Outcome, "the outcomes are the same")
			if !tt.equal {
				assert.Contains(t, r.Summary(), "the runs ended differently")
				assert.Contains(t, r.Summary(), `A "poweroff"`)
			}
		})
	}
}

// TestDiffRealRuns: two different recorded runs part at their first
// differing frame, with offsets and times from both; a run against
// itself is equal.
func TestDiffRealRuns(t *testing.T) {
	steady, err := os.ReadFile("../corpus/real/steady.zst")
	require.NoError(t, err)
	snapshot, err := os.ReadFile("../corpus/real/snapshot.zst")
	require.NoError(t, err)
	same := diffOf(t, steady, steady)
	assert.True(t, same.Equal)
	assert.Empty(t, same.Outcome)

	r := diffOf(t, steady, snapshot)
	assert.False(t, r.Equal)
	require.NotNil(t, r.Divergence)
	require.NotNil(t, r.Divergence.A)
	require.NotNil(t, r.Divergence.B)
	assert.Positive(t, r.Divergence.A.TimeNS)
	assert.Positive(t, r.Divergence.B.TimeNS)
	assert.NotEmpty(t, r.Outcome)
	frames, _ := readAll(t, bytes.NewReader(steady), ReaderOptions{})
	assert.Equal(t, int64(len(frames)), r.A.Frames)
	t.Logf("%s", r.Summary())
}
