package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/kvm"
)

// TestRecordFlagErrors: backend flags that cannot work are usage errors
// (exit 2), found before anything boots.
func TestRecordFlagErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown backend", []string{"record", "--backend", "xen", "-o", filepath.Join(dir, "a.zst")}, `--backend "xen": want auto, qemu or native`},
		{"accel with native", []string{"record", "--backend", "native", "--accel", "tcg", "-o", filepath.Join(dir, "b.zst")}, "--accel is QEMU's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := ktstr(tt.args...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, tt.want)
		})
	}
}

// TestRecordNativeWithoutKVM: where /dev/kvm is missing the native
// backend is an environment error (exit 3) naming the fix.
func TestRecordNativeWithoutKVM(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err == nil {
		t.Skip("this host has /dev/kvm; TestRecordNativeTestGuest covers the native backend here")
	}
	code, _, stderr := ktstr("record", "--backend", "native", "-o", filepath.Join(t.TempDir(), "n.zst"))
	assert.Equal(t, ExitEnv, code, stderr)
	assert.Contains(t, stderr, "--backend qemu")
	assert.Contains(t, stderr, "modprobe")
}

// TestRecordNativeTestGuest records the freestanding test guest with
// `ktstr record --backend native` (it runs even where KVM only emulates
// guest code) and replays the trace: its SCDX stopped the VM and the
// replay matches the live outcome.
func TestRecordNativeTestGuest(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm: the native backend cannot run here")
	}
	dir := t.TempDir()
	elf := filepath.Join(dir, "guest.elf")
	if err := kvm.BuildTestGuest(context.Background(), filepath.Join("..", "..", kvm.TestGuestSource), elf); err != nil {
		t.Skipf("cannot build the test guest: %v", err)
	}
	trace := filepath.Join(dir, "guest.zst")
	code, _, stderr := ktstr("record", "-q", "--backend", "native", "--kernel", elf, "--cmdline", "stim=3", "--cpus", "1", "--mem", "128", "-o", trace)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "sched_exit")
	assert.Contains(t, stderr, "native backend")

	code, stdout, stderr := ktstr("replay", "--json", trace)
	require.Equal(t, 0, code, stderr)
	var rep struct {
		Match      bool     `json:"match"`
		Violations []string `json:"violations"`
		Outcome    struct {
			Killed bool `json:"killed"`
			SysRdy bool `json:"sys_rdy"`
		} `json:"outcome"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.True(t, rep.Match)
	assert.Empty(t, rep.Violations)
	assert.True(t, rep.Outcome.Killed, "the guest's SCDX")
	assert.True(t, rep.Outcome.SysRdy)

	// Recording again to the same path keeps the first trace.
	code, _, stderr = ktstr("record", "-q", "--backend", "native", "--kernel", elf, "-o", trace)
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "--force")
}

// TestRecordKeepsExistingTrace: -o naming an existing file is refused
// (exit 2) before anything boots, and the file is untouched.
func TestRecordKeepsExistingTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kept.zst")
	require.NoError(t, os.WriteFile(path, []byte("recorded earlier"), 0o644))
	code, _, stderr := ktstr("record", "-o", path)
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "exists; a recorded trace is not overwritten")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "recorded earlier", string(b))
}
