package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/kvm"
)

// TestRecordTransportFlag: --transport names one of the native
// backend's transports and applies to it only (exit 2, one line, before
// anything is probed); pci and mmio get past the check.
func TestRecordTransportFlag(t *testing.T) {
	dir := t.TempDir()
	elf := fakeELF(t)
	refusing := recordOptions{kvmDevice: filepath.Join(dir, "kvm"), probeKVM: func(string, time.Duration) (kvm.ProbeResult, error) {
		t.Error("KVM probed before the flags were checked")
		return kvm.ProbeResult{}, errors.New("unreachable")
	}}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown transport", []string{"--backend", "native", "--transport", "ccw", "--kernel", elf}, `--transport "ccw": want pci or mmio`},
		{"transport with qemu", []string{"--backend", "qemu", "--transport", "mmio"}, "--transport applies to --backend native only"},
		{"transport with auto", []string{"--transport", "pci"}, "--transport applies to --backend native only"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := recordWith(refusing, append(tt.args, "-o", filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".zst"))...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, tt.want)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
	// Positive control: each transport gets past the flags to the boot,
	// which needs the (missing) device.
	for _, tr := range []string{"pci", "mmio"} {
		code, stderr := recordWith(recordOptions{kvmDevice: filepath.Join(dir, "kvm"), probeKVM: nativeKVM},
			"-q", "--backend", "native", "--transport", tr, "--kernel", elf, "-o", filepath.Join(dir, tr+".zst"))
		assert.Equal(t, ExitEnv, code, stderr)
		assert.Contains(t, stderr, "open "+filepath.Join(dir, "kvm"), tr)
	}
}

// TestRecordNativeTransports records the freestanding test guest with
// `ktstr record --backend native --transport T` for each transport: the
// guest's SCDX ends the run, the trace says which transport carried the
// bytes, and the replay matches the live outcome.
func TestRecordNativeTransports(t *testing.T) {
	dir := t.TempDir()
	elf := testGuest(t, dir)
	for _, tt := range []struct{ transport, meta string }{
		{"pci", "virtio-pci-legacy"},
		{"mmio", "virtio-mmio"},
	} {
		t.Run(tt.transport, func(t *testing.T) {
			trace := filepath.Join(dir, tt.transport+".zst")
			code, _, stderr := ktstr("record", "-q", "--backend", "native", "--transport", tt.transport, "--kernel", elf,
				"--cmdline", "stim=3", "--cpus", "1", "--mem", "128", "--timeout", "2m", "-o", trace)
			require.Equal(t, ExitOK, code, stderr)
			assert.Contains(t, stderr, "recorded "+trace+": "+vmm.EndSchedExit)
			assert.Contains(t, stderr, "SCDX at")

			f, err := os.Open(trace)
			require.NoError(t, err)
			defer f.Close()
			r, err := capture.NewReader(f)
			require.NoError(t, err)
			assert.Equal(t, "native", r.Meta().Backend)
			assert.Equal(t, tt.meta, r.Meta().Extra["transport"])

			code, stdout, stderr := ktstr("replay", "--json", trace)
			require.Equal(t, ExitOK, code, stderr)
			var rep struct {
				Match      bool              `json:"match"`
				Violations []json.RawMessage `json:"violations"`
				Outcome    struct {
					Killed bool `json:"killed"`
					SysRdy bool `json:"sys_rdy"`
				} `json:"outcome"`
			}
			require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
			assert.True(t, rep.Match, "replay matches the live outcome")
			assert.Empty(t, rep.Violations)
			assert.True(t, rep.Outcome.Killed, "the guest's SCDX")
			assert.True(t, rep.Outcome.SysRdy)
		})
	}
}
