package vmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSelfUsage(t *testing.T) {
	before, err := SelfUsage()
	require.NoError(t, err)
	assert.Positive(t, before.PeakRSSKiB)
	// Touch more than the peak so far: the peak must rise, whatever
	// the tests before this one held.
	b := make([]byte, before.PeakRSSKiB<<10+32<<20)
	for i := range b {
		b[i] = byte(i)
	}
	after, err := SelfUsage()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, after.PeakRSSKiB-before.PeakRSSKiB, int64(16<<10), "touching more than the old peak raised VmHWM")
	assert.Equal(t, byte(7), b[7])
	_, err = statusKiB([]byte("VmRSS:\t 12 kB\n"), "VmHWM:")
	assert.Error(t, err)
	v, err := statusKiB([]byte("Name:\tx\nVmHWM:\t  4242 kB\n"), "VmHWM:")
	require.NoError(t, err)
	assert.EqualValues(t, 4242, v)
}
