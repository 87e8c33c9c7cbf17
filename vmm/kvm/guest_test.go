//go:build linux && amd64

package kvm

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/boot"
	"github.com/ktstr/ktstr/vmm/regs"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// buildGuest compiles the test guest (or takes the one TestGuestEnv
// names), skipping the test when KVM or gcc is missing.
func buildGuest(t testing.TB) string {
	t.Helper()
	if err := kvmAvailable(); err != nil {
		t.Skipf("no usable KVM: %v", err)
	}
	if p := os.Getenv(TestGuestEnv); p != "" {
		return p
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not found: apt-get install gcc")
	}
	out := filepath.Join(t.TempDir(), "guest.elf")
	require.NoError(t, BuildTestGuest(context.Background(), filepath.Join("testdata", "guest", "guest.c"), out))
	return out
}

// guestRun is what one boot of the test guest delivered.
type guestRun struct {
	m          *Machine
	log        string
	deliveries []virtio.Delivery
	dispatched []time.Time // when each delivery's frames were dispatched
	outcome    dispatch.Outcome
}

// transports returns the console's transports the test guest tests run
// over: all of them.
func transports() []string { return Transports() }

// runGuest boots the test guest with cmdline and the console behind
// transport, dispatches its deliveries as they come and stops the
// machine on the SCDX, as the coordinator does.
func runGuest(t *testing.T, elf, transport, cmdline string) guestRun {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mi, err := (&Backend{Timeout: 2 * time.Minute, Transport: transport}).Start(ctx, vmm.Config{Kernel: elf, Cmdline: cmdline, CPUs: 1, MemMiB: 16, ConsoleLog: logPath, WorkDir: dir})
	require.NoError(t, err)
	m := mi.(*Machine)
	t.Cleanup(func() { m.Stop() })

	r := guestRun{m: m}
	sess := dispatch.NewSession()
	for !sess.Outcome().Killed {
		d, err := m.Console().ReadDelivery()
		if err != nil {
			log, _ := os.ReadFile(logPath)
			require.NoError(t, err, "the guest ended before SCDX; console:\n%s", log)
		}
		sess.Feed(0, d.Data, nil)
		r.deliveries = append(r.deliveries, d)
		r.dispatched = append(r.dispatched, time.Now())
	}
	require.NoError(t, m.Stop())
	r.outcome = sess.Finish()
	log, err := os.ReadFile(logPath)
	require.NoError(t, err)
	r.log = string(log)
	return r
}

// TestGuestBulkPort boots the freestanding guest over each transport,
// receives its SRDY, STIMs and SCDX over the bulk port, dispatches them,
// and stops the machine on the SCDX as the coordinator does.
func TestGuestBulkPort(t *testing.T) {
	elf := buildGuest(t)
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) { testGuestBulkPort(t, elf, tr) })
	}
}

func testGuestBulkPort(t *testing.T, elf, transport string) {
	r := runGuest(t, elf, transport, "stim=3")
	exit, err := r.m.Wait()
	require.NoError(t, err)
	assert.Equal(t, vmm.ExitStopped, exit.Reason, "the SCDX, through Stop, ended the guest")
	_, err = r.m.Bulk().Read(make([]byte, 64))
	assert.ErrorIs(t, err, io.EOF, "the port ends with the guest")

	require.Len(t, r.deliveries, 5, "one delivery per chain: SRDY, 3 STIM, SCDX")
	want := []wire.Tag{wire.SysRdy, wire.Stimulus, wire.Stimulus, wire.Stimulus, wire.SchedExit}
	for i, d := range r.deliveries {
		h, ok := wire.DecodeHeader(d.Data)
		require.True(t, ok)
		assert.Equal(t, want[i], h.Tag, "delivery %d", i)
		assert.Equal(t, int(h.Len)+wire.HeaderSize, len(d.Data), "delivery %d is one whole frame", i)
	}
	assert.Equal(t, "stim 2", string(r.deliveries[3].Data[wire.HeaderSize:]))
	o := r.outcome
	assert.True(t, o.SysRdy)
	assert.True(t, o.Killed)
	assert.Zero(t, o.Rejected.CRC, "the guest's CRC-32 matches Go's")
	require.Len(t, o.Verdicts, 4)
	assert.Equal(t, "SCDX", o.Verdicts[3].Tag.String())
	assert.Contains(t, r.log, "test guest: port 1 is ktstr-bulk")
	assert.NoError(t, r.m.Console().Err())
	info := r.m.Info()
	if transport == TransportMMIO {
		assert.Contains(t, r.log, "test guest: virtio console at mmio 0xd0000000", "found from the command line")
		assert.Equal(t, "virtio-mmio", info["transport"])
		assert.Equal(t, "4K@0xd0000000:5", info["virtio_mmio"])
		assert.NotZero(t, r.m.Stats().MMIOExits)
	} else {
		assert.Contains(t, r.log, "test guest: virtio console at PCI slot 0x00000001")
		assert.Equal(t, "virtio-pci-legacy", info["transport"])
		assert.Zero(t, r.m.Stats().MMIOExits, "nothing is at an unbacked address")
	}
}

// TestUnknownTransport: a transport the backend does not have is refused
// before anything is created (the positive controls are the transports
// of TestGuestBulkPort).
func TestUnknownTransport(t *testing.T) {
	_, err := (&Backend{Transport: "ccw"}).Start(context.Background(), vmm.Config{Kernel: "/nonexistent", CPUs: 1, MemMiB: 16})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `transport "ccw": want pci or mmio`)
}

// TestGuestTimeout checks the machine's own timeout: a guest that is
// never stopped ends with reason "timeout" (the positive control is
// TestGuestBulkPort, stopped by its SCDX).
func TestGuestTimeout(t *testing.T) {
	elf := buildGuest(t)
	dir := t.TempDir()
	mi, err := (&Backend{Timeout: 300 * time.Millisecond}).Start(context.Background(), vmm.Config{Kernel: elf, Cmdline: "stim=1", CPUs: 1, MemMiB: 16, WorkDir: dir})
	require.NoError(t, err)
	exit, err := mi.Wait()
	require.NoError(t, err)
	assert.Equal(t, vmm.ExitTimeout, exit.Reason)
	for {
		if _, err := mi.Bulk().Read(make([]byte, 64)); err != nil {
			assert.ErrorIs(t, err, io.EOF, "deliveries taken before the end are still read, then EOF")
			break
		}
	}
	assert.NoError(t, mi.Stop(), "Stop after the end is harmless")
}

// TestGuestPauseRegisters pauses the running guest, reads its registers
// and resumes it.
func TestGuestPauseRegisters(t *testing.T) {
	elf := buildGuest(t)
	mi, err := (&Backend{Timeout: time.Minute}).Start(context.Background(), vmm.Config{Kernel: elf, Cmdline: "stim=1", CPUs: 1, MemMiB: 16, WorkDir: t.TempDir()})
	require.NoError(t, err)
	defer mi.Stop()
	_, err = mi.Registers()
	assert.Error(t, err, "registers need a paused guest")
	require.NoError(t, mi.Pause())
	raw, err := mi.Registers()
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"schema":"`+regs.Schema+`"`)
	cpus, err := regs.Parse(raw)
	require.NoError(t, err)
	require.Len(t, cpus, 1)
	assert.Empty(t, cpus[0].Missing(), "every register of the schema")
	assert.GreaterOrEqual(t, cpus[0].Regs["RIP"], uint64(0x100000), "in the guest's code at 1 MiB")
	assert.Equal(t, uint64(boot.SelectorCode), cpus[0].Regs["CS"])
	assert.Equal(t, uint64(0xa09b00), cpus[0].Regs["CS_ATTRS"], "64-bit code: G, L, P, S, type 11")
	assert.Equal(t, uint64(0x500), cpus[0].Regs["EFER"]&0x500, "long mode")
	require.NoError(t, mi.Resume())
	d, err := mi.(*Machine).Console().ReadDelivery()
	require.NoError(t, err, "the guest runs on after Resume")
	assert.NotEmpty(t, d.Data)
}

// TestBulkDeliveryCost measures one bulk-port delivery of the test guest:
// VM exits between consecutive deliveries (the guest does nothing but
// build the next frame and notify), and the host time from the device
// taking the chain in the notify exit to the frame being dispatched.
func TestBulkDeliveryCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; skipped in -short")
	}
	elf := buildGuest(t)
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) { testBulkDeliveryCost(t, elf, tr) })
	}
}

func testBulkDeliveryCost(t *testing.T, elf, transport string) {
	const n = 200
	r := runGuest(t, elf, transport, fmt.Sprintf("stim=%d", n))
	require.Len(t, r.deliveries, n+2)
	var exits []uint64
	var lat []time.Duration
	for i := 2; i < len(r.deliveries); i++ {
		exits = append(exits, r.deliveries[i].Stamp-r.deliveries[i-1].Stamp)
		lat = append(lat, r.dispatched[i].Sub(r.deliveries[i].Notified))
	}
	slices.Sort(exits)
	slices.Sort(lat)
	span := r.deliveries[len(r.deliveries)-1].Notified.Sub(r.deliveries[1].Notified)
	t.Logf("%s: %d STIM deliveries: exits per delivery min %d median %d max %d; device took chain → dispatched median %v p90 %v; guest-visible interval between notifies %v (frame build with bitwise CRC-32 under the emulator included)",
		transport, n, exits[0], exits[len(exits)/2], exits[len(exits)-1], lat[len(lat)/2], lat[len(lat)*9/10], span/time.Duration(n))
	assert.Equal(t, uint64(1), exits[len(exits)/2], "one exit, the notify, per delivery")
}

// TestGuestPowerOff lets the guest end itself the way Linux powers off
// without ACPI: it prints the power-off line and halts. The machine must
// end with reason "poweroff" without anyone calling Stop (the negative
// control is TestGuestBulkPort's guest, which halts silently and is
// stopped).
func TestGuestPowerOff(t *testing.T) {
	elf := buildGuest(t)
	mi, err := (&Backend{Timeout: time.Minute}).Start(context.Background(), vmm.Config{Kernel: elf, Cmdline: "stim=1 poweroff", CPUs: 1, MemMiB: 16, WorkDir: t.TempDir()})
	require.NoError(t, err)
	defer mi.Stop()
	n := 0
	for {
		if _, err := mi.Bulk().Read(make([]byte, 64)); err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		n++
	}
	exit, err := mi.Wait()
	require.NoError(t, err)
	assert.Equal(t, vmm.ExitPoweroff, exit.Reason)
	assert.Equal(t, 3, n, "every delivery is read before EOF")
}

// TestGuestFreeze checks that Freeze leaves no vCPU running guest code:
// the running test guest's exits stop counting the moment it returns,
// and the machine ends as stopped. Control: before Freeze they count.
func TestGuestFreeze(t *testing.T) {
	elf := buildGuest(t)
	mi, err := (&Backend{Timeout: time.Minute}).Start(context.Background(), vmm.Config{Kernel: elf, Cmdline: "stim=1", CPUs: 1, MemMiB: 16, WorkDir: t.TempDir()})
	require.NoError(t, err)
	defer mi.Stop()
	m := mi.(*Machine)
	go func() { // keep the port drained so the guest keeps running
		for {
			if _, err := m.Console().ReadDelivery(); err != nil {
				return
			}
		}
	}()
	before := m.Stats().Exits
	require.Eventually(t, func() bool { return m.Stats().Exits > before }, 10*time.Second, time.Millisecond, "the guest runs before Freeze")

	var f vmm.Freezer = m
	start := time.Now()
	require.NoError(t, f.Freeze())
	t.Logf("Freeze returned after %v", time.Since(start))
	frozen := m.Stats().Exits
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, frozen, m.Stats().Exits, "no VM exit after Freeze: no vCPU runs")
	exit, err := m.Wait()
	require.NoError(t, err)
	assert.Equal(t, vmm.ExitStopped, exit.Reason)
}

// TestGuestConsoleLogBudget: a guest printing past the console log's
// budget on its UART leaves a log of the budget and one line, with the
// boot's start and the output's end; Wait says how much was dropped.
// Control: output within the budget is kept whole.
func TestGuestConsoleLogBudget(t *testing.T) {
	elf := buildGuest(t)
	for _, tc := range []struct {
		name  string
		print int
	}{
		{"within the budget", 1000},
		{"past the budget", vmm.MinMaxConsole + 16<<10}, // about 5 s under an emulating KVM (two exits a byte)
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			logPath := filepath.Join(dir, "console.log")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := vmm.Config{Kernel: elf, Cmdline: fmt.Sprintf("print=%d", tc.print), CPUs: 1, MemMiB: 16,
				ConsoleLog: logPath, MaxConsole: vmm.MinMaxConsole, WorkDir: dir}
			mi, err := (&Backend{Timeout: 2 * time.Minute}).Start(ctx, cfg)
			require.NoError(t, err)
			m := mi.(*Machine)
			t.Cleanup(func() { m.Stop() })
			sess := dispatch.NewSession()
			for !sess.Outcome().Killed {
				d, err := m.Console().ReadDelivery()
				require.NoError(t, err, "the guest ended before SCDX")
				sess.Feed(0, d.Data, nil)
			}
			require.NoError(t, m.Stop())
			exit, err := m.Wait()
			require.NoError(t, err)
			b, err := os.ReadFile(logPath)
			require.NoError(t, err)
			log := string(b)
			assert.True(t, strings.HasPrefix(log, "test guest: up\n"), "the boot's start is kept")
			assert.Contains(t, log[max(0, len(log)-200):], "sending frames", "the output's end is kept")
			if tc.print < vmm.MinMaxConsole {
				assert.Zero(t, exit.ConsoleDropped)
				assert.NotContains(t, log, "[ktstr:")
				assert.Greater(t, len(log), tc.print)
				return
			}
			assert.Positive(t, exit.ConsoleDropped)
			assert.LessOrEqual(t, len(log), vmm.MinMaxConsole+200, "the budget and one line")
			assert.Contains(t, log, "[ktstr: the guest wrote ")
		})
	}
}
