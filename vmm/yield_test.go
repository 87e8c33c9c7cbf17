package vmm

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// threadPolicies returns the scheduling policy of every thread of this
// process.
func threadPolicies(t *testing.T) map[int]uint32 {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	p := map[int]uint32{}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		require.NoError(t, err)
		if attr, err := unix.SchedGetAttr(tid, 0); err == nil {
			p[tid] = attr.Policy
		}
	}
	return p
}

func allPolicy(t *testing.T, want uint32) bool {
	t.Helper()
	for _, p := range threadPolicies(t) {
		if p != want {
			return false
		}
	}
	return true
}

func TestSetThreadsPolicy(t *testing.T) {
	require.True(t, allPolicy(t, unix.SCHED_NORMAL), "the test starts with every thread normal")
	require.NoError(t, setThreadsPolicy(unix.SCHED_BATCH))
	assert.True(t, allPolicy(t, unix.SCHED_BATCH), "every thread batch")
	require.NoError(t, setThreadsPolicy(unix.SCHED_NORMAL))
	assert.True(t, allPolicy(t, unix.SCHED_NORMAL), "every thread normal again")
}

func TestRunYieldCPU(t *testing.T) {
	for _, yield := range []bool{true, false} {
		t.Run(strconv.FormatBool(yield), func(t *testing.T) {
			m := newFake(false, step{b: frame(wire.SysRdy, nil)}, step{b: snrq(1, wire.SnapshotCapture, "x")}, step{b: frame(wire.Exit, i32(0))})
			var during bool
			m.onPause = func() { during = allPolicy(t, unix.SCHED_BATCH) }
			res, _ := record(t, context.Background(), m, Run{Watchdog: time.Minute, Timeout: time.Minute, YieldCPU: yield})
			assert.Equal(t, EndPoweroff, res.Reason)
			assert.Equal(t, yield, during, "threads are batch while the guest runs only when yielding")
			assert.True(t, allPolicy(t, unix.SCHED_NORMAL), "every thread normal once the run is over")
		})
	}
}
