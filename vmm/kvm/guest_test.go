//go:build linux && amd64

package kvm

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/vmm"
)

// guestCFlags builds testdata/guest/guest.c into an ELF the loader
// enters in long mode at 1 MiB.
var guestCFlags = []string{
	"-m64", "-O2", "-ffreestanding", "-fno-pic", "-no-pie", "-mgeneral-regs-only",
	"-mno-sse", "-mno-red-zone", "-fno-stack-protector", "-nostdlib", "-static",
	"-Wl,-Ttext-segment=0x100000", "-Wl,--build-id=none",
}

// buildGuest compiles the test guest, skipping the test when KVM or gcc
// is missing.
func buildGuest(t testing.TB) string {
	t.Helper()
	if err := kvmAvailable(); err != nil {
		t.Skipf("no usable KVM: %v", err)
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: apt-get install gcc")
	}
	out := filepath.Join(t.TempDir(), "guest.elf")
	args := append(append([]string{}, guestCFlags...), "-o", out, filepath.Join("testdata", "guest", "guest.c"))
	b, err := exec.Command(gcc, args...).CombinedOutput()
	require.NoError(t, err, "building the test guest: %s", b)
	return out
}

// TestGuestBulkPort boots the freestanding guest, receives its SRDY,
// STIM and SCDX over the bulk port, dispatches them, and stops the
// machine on the SCDX as the coordinator does.
func TestGuestBulkPort(t *testing.T) {
	elf := buildGuest(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "console.log")
	b := &Backend{Timeout: 2 * time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mi, err := b.Start(ctx, vmm.Config{Kernel: elf, Cmdline: "test", CPUs: 1, MemMiB: 16, ConsoleLog: logPath, WorkDir: dir})
	require.NoError(t, err)
	m := mi.(*Machine)
	t.Cleanup(func() { m.Stop() })

	a := dispatch.NewAssembler()
	sinks := dispatch.NewSinks(nil)
	var deliveries [][]byte
	var latency []time.Duration
	var stamps []uint64
	for !sinks.Outcome.Killed {
		d, err := m.Console().ReadDelivery()
		require.NoError(t, err, "the guest ended before SCDX: see %s", logPath)
		deliveries = append(deliveries, d.Data)
		stamps = append(stamps, d.Stamp)
		a.Feed(d.Data)
		for {
			msg, ok := a.Next()
			if !ok {
				break
			}
			dispatch.Dispatch(&msg, sinks)
		}
		latency = append(latency, time.Since(d.Notified))
	}
	require.NoError(t, m.Stop())
	exit, err := m.Wait()
	require.NoError(t, err)
	assert.Equal(t, "stopped", exit.Reason, "the SCDX, through Stop, ended the guest")

	// Positive control of the stop: the machine is gone, the port at EOF.
	_, err = m.Bulk().Read(make([]byte, 64))
	assert.ErrorIs(t, err, io.EOF)

	require.Len(t, deliveries, 3, "one delivery per chain: SRDY, STIM, SCDX")
	want := []wire.Tag{wire.SysRdy, wire.Stimulus, wire.SchedExit}
	for i, d := range deliveries {
		h, ok := wire.DecodeHeader(d)
		require.True(t, ok)
		assert.Equal(t, want[i], h.Tag, "delivery %d", i)
		assert.Equal(t, int(h.Len)+wire.HeaderSize, len(d), "delivery %d is one whole frame", i)
	}
	o := sinks.Outcome
	assert.True(t, o.SysRdy)
	assert.True(t, o.Killed)
	assert.Zero(t, o.Rejected.CRC, "the guest's CRC-32 matches Go's")
	require.Len(t, o.Verdicts, 2)
	assert.Equal(t, "STIM", o.Verdicts[0].Tag.String())
	assert.Equal(t, "SCDX", o.Verdicts[1].Tag.String())

	log, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Contains(t, string(log), "test guest: port 1 is ktstr-bulk")
	assert.NoError(t, m.Console().Err())

	st := m.Stats()
	cs := m.Console().Stats()
	t.Logf("exits %d (io %d, mmio %d); console notifies %d, deliveries %d (%d bytes)", st.Exits, st.IOExits, st.MMIOExits, cs.Notifies, cs.Deliveries, cs.DeliveredBytes)
	for i := range deliveries {
		line := "delivery %d: %d bytes, device took chain → dispatched %v"
		args := []any{i, len(deliveries[i]), latency[i]}
		if i > 0 {
			line += ", exits since previous delivery %d"
			args = append(args, stamps[i]-stamps[i-1])
		}
		t.Logf(line, args...)
	}
}
