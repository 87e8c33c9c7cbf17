//go:build ktstr_brokengate

package tracetool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestMinimizeViolationBrokenGate is the positive control of the
// violation property: built with -tags ktstr_brokengate (make oracle),
// dispatch accepts a torn SNRQ, replay says an invariant is broken, and
// the minimizer cuts a run down to that one torn frame.
func TestMinimizeViolationBrokenGate(t *testing.T) {
	bad := snrq(7)
	bad[8] ^= 0xff // torn: its crc no longer matches
	s := streamOf(frame(wire.SysRdy, nil), frame(wire.Stimulus, []byte("a")), cat(frame(wire.Step, []byte{1, 0}), bad[:30]),
		cat(bad[30:], frame(wire.Stimulus, []byte("b"))), frame(wire.Exit, []byte{0}))
	for _, prop := range []string{"violation", "violation=1"} {
		t.Run(prop, func(t *testing.T) {
			r, _ := minimize(t, s, nil, prop)
			t.Logf("%s → %s in %d tries", r.Before, r.After, r.Tries)
			assert.Equal(t, bad, r.Stream.Data, "the torn SNRQ, and nothing else")
			assert.True(t, r.Minimal)
		})
	}
	p, err := ParseProperty("violation=5")
	require.NoError(t, err)
	ok, _ := NewChecker(p, nil).Baseline(s)
	assert.False(t, ok, "the broken SNRQ gate breaks invariant 1, not 5")
}
