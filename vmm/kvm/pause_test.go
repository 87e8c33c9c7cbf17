//go:build linux && amd64

package kvm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm"
)

// TestGuestEndsWhilePaused: a guest paused for a snapshot ends at once
// when it is stopped, frozen or its backend timeout passes; none of
// them waits for a Resume that may never come (each hung before). A
// pause followed by a resume, then a stop, is the control.
func TestGuestEndsWhilePaused(t *testing.T) {
	elf := buildGuest(t)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		end     func(m *Machine) error
		reason  vmm.ExitReason
	}{
		{"resumed, then stopped (control)", time.Minute, func(m *Machine) error {
			require.NoError(t, m.Resume())
			return m.Stop()
		}, vmm.ExitStopped},
		{"stopped", time.Minute, (*Machine).Stop, vmm.ExitStopped},
		{"frozen", time.Minute, (*Machine).Freeze, vmm.ExitStopped},
		{"backend timeout", 500 * time.Millisecond, func(m *Machine) error { _, err := m.Wait(); return err }, vmm.ExitTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := (&Backend{Timeout: tc.timeout}).Start(t.Context(), vmm.Config{Kernel: elf, Cmdline: "stim=1", CPUs: 1, MemMiB: 16, WorkDir: t.TempDir()})
			require.NoError(t, err)
			m := mi.(*Machine)
			require.NoError(t, m.Pause())
			done := make(chan error, 1)
			go func() { done <- tc.end(m) }()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(10 * time.Second):
				require.NoError(t, m.Resume()) // let the test end
				<-done
				t.Fatal("the paused guest did not end until it was resumed")
			}
			exit, err := m.Wait()
			require.NoError(t, err)
			assert.Equal(t, tc.reason, exit.Reason)
		})
	}
}
