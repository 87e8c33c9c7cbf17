//go:build linux && amd64

package kvm

import (
	"bytes"
	"context"
	"fmt"
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
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) { testRecordReplayGuest(t, elf, tr) })
	}
}

func testRecordReplayGuest(t *testing.T, elf, transport string) {
	rep, size := recordGuest(t, elf, transport, "stim=1")
	assert.Equal(t, 3, rep.Deliveries, "one trace record per chain")
	assert.Equal(t, int64(16+22+20), rep.Bytes, "SRDY, STIM \"stim 0\", SCDX")
	t.Logf("trace %d bytes for %d deliveries of %d TX bytes (%d frames)", size, rep.Deliveries, rep.Bytes, rep.Frames)

	// Trace bytes per delivery: the growth of the trace with 200 more
	// STIM deliveries of 22-24 bytes each.
	const more = 200
	big, bigSize := recordGuest(t, elf, transport, fmt.Sprintf("stim=%d", 1+more))
	assert.Equal(t, 3+more, big.Deliveries)
	t.Logf("trace %d bytes for %d deliveries: %.1f compressed trace bytes per extra delivery (uncompressed: 16 bytes of record framing + the delivery)",
		bigSize, big.Deliveries, float64(bigSize-size)/more)
}

// recordGuest records the test guest with cmdline through the shared
// coordinator, replays the trace, checks the run and the replay, and
// returns the replay report and the trace size.
func recordGuest(t *testing.T, elf, transport, cmdline string) (*replay.Report, int) {
	dir := t.TempDir()
	tracePath := filepath.Join(dir, "guest.trace.zst")
	f, err := os.Create(tracePath)
	require.NoError(t, err)
	defer f.Close()
	run := &vmm.Run{
		Backend: &Backend{Transport: transport},
		Config:  vmm.Config{Kernel: elf, Cmdline: cmdline, CPUs: 1, MemMiB: 16, ConsoleLog: filepath.Join(dir, "console.log"), WorkDir: dir},
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
	assert.Equal(t, vmm.ExitStopped, res.Exit.Reason)
	assert.True(t, res.Outcome.Killed)
	assert.True(t, res.Outcome.SysRdy)
	assert.GreaterOrEqual(t, res.SchedExitNS, res.SysRdyNS)
	assert.GreaterOrEqual(t, res.FrozenNS, res.SchedExitNS, "the vCPUs were stopped (Freeze) after the SCDX")
	t.Logf("SCDX -> vCPUs stopped %v, -> VM gone %v", time.Duration(res.FrozenNS-res.SchedExitNS), time.Duration(res.GoneNS-res.SchedExitNS))

	raw, err := os.ReadFile(tracePath)
	require.NoError(t, err)
	rep, err := replay.Trace(bytes.NewReader(raw), tracePath, replay.Options{})
	require.NoError(t, err)
	assert.True(t, rep.Match, "replay reproduces the live outcome: %v", rep.Diff)
	assert.Empty(t, rep.Violations)
	assert.Equal(t, "native", rep.Meta.Backend)
	want := map[string]string{TransportPCI: "virtio-pci-legacy", TransportMMIO: "virtio-mmio"}[transport]
	assert.Equal(t, want, rep.Meta.Extra["transport"], "the trace says which transport carried it")
	require.NotNil(t, rep.Recorded)
	return rep, len(raw)
}
