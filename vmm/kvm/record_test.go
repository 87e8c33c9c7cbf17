//go:build linux && amd64

package kvm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/replay"
	"github.com/ktstr/ktstr/vmm"
)

// TestRecordReplayGuest records the freestanding guest with the shared
// coordinator (what `ktstr record --backend native` runs) and replays the
// trace: the SCDX must have stopped the guest, and replay must reproduce
// the live outcome.
func TestRecordReplayGuest(t *testing.T) {
	elf := buildGuest(t)
	dir := t.TempDir()
	tracePath := filepath.Join(dir, "guest.trace.zst")
	f, err := os.Create(tracePath)
	require.NoError(t, err)
	defer f.Close()

	run := &vmm.Run{
		Backend: &Backend{},
		Config:  vmm.Config{Kernel: elf, Cmdline: "test", CPUs: 1, MemMiB: 16, ConsoleLog: filepath.Join(dir, "console.log"), WorkDir: dir},
		Trace:   f,
		Meta:    capture.Meta{KernelPath: elf, CPUs: 1, MemoryMiB: 16, Scenario: "native-test-guest"},
		Timeout: 2 * time.Minute,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := run.Execute(ctx)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	assert.Equal(t, vmm.EndSchedExit, res.Reason, "the SCDX stopped the run: %s", res.Detail)
	assert.Equal(t, "stopped", res.Exit.Reason)
	assert.True(t, res.Outcome.Killed)
	assert.True(t, res.Outcome.SysRdy)
	assert.GreaterOrEqual(t, res.SchedExitNS, res.SysRdyNS)

	raw, err := os.ReadFile(tracePath)
	require.NoError(t, err)
	rep, err := replay.Trace(bytes.NewReader(raw), tracePath, replay.Options{})
	require.NoError(t, err)
	assert.True(t, rep.Match, "replay reproduces the live outcome: %v", rep.Diff)
	assert.Empty(t, rep.Violations)
	assert.Equal(t, "native", rep.Meta.Backend)
	assert.Equal(t, 3, rep.Deliveries, "one trace record per chain")
	assert.Equal(t, int64(16+22+20), rep.Bytes, "SRDY, STIM \"stim 0\", SCDX")
	require.NotNil(t, rep.Recorded)
	t.Logf("trace %d bytes for %d deliveries of %d TX bytes (%d frames)", len(raw), rep.Deliveries, rep.Bytes, rep.Frames)
}
