package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/kernel"
	"github.com/ktstr/ktstr/vmm"
)

// TestSchedExt records a real sched_ext run: the kernel built by `make
// scx` (CONFIG_SCHED_CLASS_EXT), scx_simple as the supervised scheduler,
// the steady workload under it, then the kernel ejecting it (SysRq-S).
// The scheduler's exit goes out as SCDX and the host must stop the run
// on it; the replay must match. It skips where that build is not in the
// cache (it fails instead when KTSTR_REQUIRE_SCX is set, as `make
// e2e-scx` does). KTSTR_E2E_SAVE=DIR keeps the trace (corpus/real/sched-ext.zst).
func TestSchedExt(t *testing.T) {
	e := setup(t)
	m, err := kernel.LookupBuild(context.Background(), kernel.BuildOptions{})
	if errors.Is(err, kernel.ErrNotBuilt) {
		// make e2e-scx runs after make scx: there, a missing build is a
		// failure, not a reason to skip.
		if os.Getenv("KTSTR_REQUIRE_SCX") != "" {
			t.Fatalf("KTSTR_REQUIRE_SCX is set but %v", err)
		}
		t.Skip("e2e: no sched_ext kernel in the cache: run 'make scx'")
	}
	require.NoError(t, err)
	sched, ok := m.SchedulerPath("scx_simple")
	require.True(t, ok, "the build has scx_simple")
	k := kernel.Kernel{Path: m.KernelPath(), Release: m.KernelRelease, SHA256: m.KernelSHA256}

	r := recordRun(t, e.agent, k, sched, "sched-ext", 2*time.Second)
	res := r.res
	assert.Equal(t, vmm.EndSchedExit, res.Reason, res.Detail)
	assert.True(t, res.Outcome.Killed)
	assert.Equal(t, uint64(1), res.Outcome.KillSignals)
	assert.Equal(t, dispatch.Rejected{}, res.Outcome.Rejected)

	tp := testPayload(t, res)
	assert.Equal(t, true, tp["pass"], "TEST: %s", res.TestResult)
	loaded := tp["loaded"].(map[string]any)
	assert.Equal(t, "enabled", loaded["state"])
	assert.Equal(t, "simple", loaded["ops"], "the kernel runs scx_simple's ops")
	assert.Equal(t, true, loaded["switch_all"])

	// The ejection is STEP 3; the run must end promptly after it.
	eject := stepDelivery(t, r.recs, 3)
	require.GreaterOrEqual(t, eject, int64(0), "the guest reached the ejection step")
	t.Logf("sched-ext: boot to SYS_RDY %v; scx_simple enabled in %v; ejection (STEP 3 seen) → SCDX seen %v → VM gone %v",
		time.Duration(res.SysRdyNS), time.Duration(int64(tp["enable_ns"].(float64))),
		time.Duration(res.SchedExitNS-eject), time.Duration(res.GoneNS-eject))
	assert.Less(t, time.Duration(res.GoneNS-res.SchedExitNS), time.Second, "the run ends within 1 s of SCDX")

	if dir := os.Getenv("KTSTR_E2E_SAVE"); dir != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sched-ext.zst"), r.trace, 0o644))
	}
}

// stepDelivery returns the run-clock time of the TX delivery that
// completes the accepted STEP n frame, or -1.
func stepDelivery(t *testing.T, recs []capture.Record, n uint16) int64 {
	t.Helper()
	a := dispatch.NewAssembler()
	for _, rec := range recs {
		if rec.Kind != capture.KindData || rec.Dir != capture.TX || rec.Port != capture.BulkPort {
			continue
		}
		a.Feed(rec.Data)
		for {
			m, ok := a.Next()
			if !ok {
				break
			}
			if m.Tag == wire.Step && m.Intact() && len(m.Payload) == 2 && binary.LittleEndian.Uint16(m.Payload) == n {
				return rec.TimeNS
			}
		}
	}
	return -1
}
