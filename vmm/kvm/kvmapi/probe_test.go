//go:build linux && amd64

package kvmapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProbe(t *testing.T) {
	if err := Available(DefaultDevice); err != nil {
		t.Skipf("no usable KVM: %v", err)
	}
	res, err := Probe(ProbeLimit)
	require.NoError(t, err)
	require.NotZero(t, res.Instructions)
	if res.Finished {
		assert.Equal(t, uint64(ProbeInstructions), res.Instructions, "every loop instruction counted")
	}
	t.Logf("probe: %v, native: %v", res, res.Native())

	// At DecisionLimit the verdict is the same: a host that is native
	// finishes in time; one that is not cannot.
	quick, err := Probe(DecisionLimit)
	require.NoError(t, err)
	assert.Equal(t, res.Native(), quick.Native(), "%v against %v", quick, res)
	t.Logf("probe with the decision limit: %v", quick.Verdict())
}

func TestProbeNoDevice(t *testing.T) {
	_, err := ProbeDevice(t.TempDir()+"/kvm", time.Second)
	assert.ErrorIs(t, err, ErrNoKVM)
	assert.ErrorContains(t, err, "modprobe kvm_intel")
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name   string
		res    ProbeResult
		native bool
	}{
		{"hardware speed", ProbeResult{Instructions: ProbeInstructions, Elapsed: time.Millisecond, Finished: true}, true},
		{"just at the threshold", ProbeResult{Instructions: 100_000_000, Elapsed: time.Second, Finished: true}, true},
		{"just under it", ProbeResult{Instructions: 99_999_999, Elapsed: time.Second, Finished: true}, false},
		{"fast but cut short", ProbeResult{Instructions: 1_000_000, Elapsed: time.Millisecond}, false},
		{"the emulator", ProbeResult{Instructions: ProbeInstructions, Elapsed: 1200 * time.Millisecond, Finished: true}, false},
		{"nothing ran", ProbeResult{}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.native, tt.res.Native(), tt.name)
		assert.Contains(t, tt.res.Verdict(), "native is at least 1e+08 per second", tt.name)
	}
	assert.Equal(t, 20*time.Millisecond, DecisionLimit.Round(time.Millisecond), "2M instructions at 10^8 a second")
}
