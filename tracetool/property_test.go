package tracetool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

func TestParseProperty(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means an error
	}{
		{"killed", "killed"},
		{"sys_rdy", "sys_rdy"},
		{"violation", "violation"},
		{"violation=10", "violation=10"},
		{"mismatch", "mismatch"},
		{"reject=crc", "reject=crc"},
		{"reject=out_of_order", "reject=out_of_order"},
		{"reject=oversize", "reject=oversize"},
		{"tag=SCDX", "tag=SCDX"},
		{"tag=0x53434458", "tag=SCDX"},
		{"killed, tag=STIM ,reject=crc", "killed,tag=STIM,reject=crc"},
		{"killed,killed", "killed"},
		{"", ""},
		{"kill", ""},
		{"killed=1", ""},
		{"violation=0", ""},
		{"violation=12", ""},
		{"violation=x", ""},
		{"reject=", ""},
		{"reject=nope", ""},
		{"reject", ""},
		{"tag=SNRP", ""}, // host→guest: never accepted on TX
		{"tag=ABCD", ""}, // not in the table
		{"tag=TOOLONG", ""},
		{"killed,", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseProperty(tt.in)
			if tt.want == "" {
				require.Error(t, err)
				assert.NotContains(t, err.Error(), "\n", "one line")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.String())
		})
	}
}

// TestCheckerConditions: every condition holds on a stream built to show
// it and fails on its near twin that does not (each row is its own
// positive and negative control).
func TestCheckerConditions(t *testing.T) {
	srdy := frame(wire.SysRdy, nil)
	var snrqs64, snrqs65 [][]byte
	for i := range 65 {
		if i < 64 {
			snrqs64 = append(snrqs64, snrq(uint32(i)))
		}
		snrqs65 = append(snrqs65, snrq(uint32(i)))
	}
	tests := []struct {
		prop    string
		yes, no *replay.Stream
	}{
		{"killed", streamOf(frame(wire.SchedExit, nil)), streamOf(torn(wire.SchedExit, []byte("x")))},
		{"sys_rdy", streamOf(srdy), streamOf(frame(wire.SysRdy, []byte{1}))},
		{"reject=crc", streamOf(torn(wire.Stimulus, []byte("x"))), streamOf(frame(wire.Stimulus, []byte("x")))},
		{"reject=pad", streamOf(padded(wire.Stimulus, nil)), streamOf(frame(wire.Stimulus, nil))},
		{"reject=unknown_tag", streamOf(frame(wire.Tag(0x41414141), nil)), streamOf(frame(wire.Stimulus, nil))},
		{"reject=forged_tag", streamOf(frame(wire.SnapshotReply, nil)), streamOf(frame(wire.Stimulus, nil))},
		{"reject=shape", streamOf(frame(wire.SysRdy, []byte{1})), streamOf(srdy)},
		{"reject=oneshot_repeat", streamOf(srdy, srdy), streamOf(srdy)},
		{"reject=overflow", streamOf(cat(snrqs65...)), streamOf(cat(snrqs64...))},
		{"reject=out_of_order", streamOf(frame(wire.WatchdogResume, nil)), streamOf(frame(wire.WatchdogPause, nil), frame(wire.WatchdogResume, nil))},
		{"reject=oversize", streamOf(cat(oversizeHeader(), srdy)), streamOf(srdy)},
		{"reject=resync_bytes", streamOf(cat(oversizeHeader(), srdy)), streamOf(srdy)},
		{"reject=truncated_tail_bytes", streamOf(srdy[:10]), streamOf(srdy)},
		{"tag=STIM", streamOf(frame(wire.Stimulus, []byte("x"))), streamOf(torn(wire.Stimulus, []byte("x")))},
		{"killed,tag=STIM", streamOf(frame(wire.Stimulus, nil), frame(wire.SchedExit, nil)), streamOf(frame(wire.SchedExit, nil))},
		{"sys_rdy,reject=oneshot_repeat", streamOf(cat(srdy, srdy)), streamOf(cat(frame(wire.SysRdy, []byte{1}), srdy))},
	}
	for _, tt := range tests {
		t.Run(tt.prop, func(t *testing.T) {
			p, err := ParseProperty(tt.prop)
			require.NoError(t, err)
			ok, why := NewChecker(p, nil).Baseline(tt.yes)
			assert.True(t, ok, "shows it: %s", why)
			c := NewChecker(p, nil)
			ok, why = c.Baseline(tt.no)
			assert.False(t, ok, "does not show it")
			assert.NotEmpty(t, why, "and says why")
			assert.False(t, c.Check(tt.no))
			assert.True(t, c.Check(tt.yes))
		})
	}
}

// TestCheckerMismatch: mismatch needs the fields in which the baseline
// differs from the recorded outcome to go on differing; a stream that
// matches, or no recorded outcome at all, does not show it.
func TestCheckerMismatch(t *testing.T) {
	p, err := ParseProperty("mismatch")
	require.NoError(t, err)
	s := streamOf(frame(wire.SysRdy, nil), frame(wire.Step, []byte{7, 0}))
	recorded := outcomeOf(s)
	recorded.Step = 9 // the live run said step 9; replay says 7

	c := NewChecker(p, &recorded)
	ok, why := c.Baseline(s)
	require.True(t, ok, why)
	assert.True(t, c.Check(streamOf(frame(wire.Step, []byte{7, 0}))), "step still differs (and sys_rdy now too)")
	assert.False(t, c.Check(streamOf(frame(wire.SysRdy, nil), frame(wire.Step, []byte{9, 0}))), "step 9 matches the recording: the mismatch is gone")

	match := outcomeOf(s)
	ok, why = NewChecker(p, &match).Baseline(s)
	assert.False(t, ok, "a replay that matches shows no mismatch")
	assert.Contains(t, why, "matches")
	ok, why = NewChecker(p, nil).Baseline(s)
	assert.False(t, ok)
	assert.Contains(t, why, "no recorded outcome")
}

// TestCheckerViolationOnGoodStreams: a correct dispatch breaks no
// invariant on the checked-in runs, so violation does not hold there.
// Its positive control is TestMinimizeViolationBrokenGate
// (-tags ktstr_brokengate, make oracle).
func TestCheckerViolationOnGoodStreams(t *testing.T) {
	p, err := ParseProperty("violation")
	require.NoError(t, err)
	for _, path := range realTraces(t) {
		l := load(t, path)
		ok, why := NewChecker(p, l.Recorded).Baseline(l.Stream)
		assert.False(t, ok, path)
		assert.Equal(t, "its replay breaks no invariant", why)
	}
}
