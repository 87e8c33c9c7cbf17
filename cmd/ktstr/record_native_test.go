package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
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

// recordWith runs `ktstr record args...` with the host facts of o (the
// KVM device node and probe) and returns the exit status and stderr.
func recordWith(o recordOptions, args ...string) (code int, stderr string) {
	var out, errb bytes.Buffer
	code = report(&errb, o.run(args, &out, &errb))
	return code, errb.String()
}

// fakeELF writes a file that looks like a freestanding ELF guest (ELF
// magic, no Linux banner); nothing boots it.
func fakeELF(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "guest.elf")
	require.NoError(t, os.WriteFile(path, append([]byte("\x7fELF"), make([]byte, 60)...), 0o644))
	return path
}

// fakeBzImage writes a file carrying an x86 boot header and a version
// string, which is all `--kernel` checks of a bzImage; nothing boots it.
func fakeBzImage(t *testing.T) string {
	t.Helper()
	b := make([]byte, 0x1000)
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x800-0x200)
	copy(b[0x800:], "6.12.0-test (test@example) #1 SMP\x00")
	path := filepath.Join(t.TempDir(), "vmlinuz")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

// emulatingKVM stands for a host whose KVM runs guest code in the
// kernel's instruction emulator: the probe loop did not finish in time.
func emulatingKVM(string, time.Duration) (kvm.ProbeResult, error) {
	return kvm.ProbeResult{Instructions: 2_000_000, Elapsed: 2 * time.Second}, nil
}

// nativeKVM stands for a host whose KVM runs guest code natively.
func nativeKVM(string, time.Duration) (kvm.ProbeResult, error) {
	return kvm.ProbeResult{Instructions: 2_000_001, Elapsed: time.Millisecond, Finished: true}, nil
}

// TestRecordFlagErrors: flags that cannot work together are usage errors
// (exit 2, one line), found before anything is probed or boots.
func TestRecordFlagErrors(t *testing.T) {
	dir := t.TempDir()
	elf := fakeELF(t)
	out := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown backend", []string{"--backend", "xen", "-o", out("a.zst")}, `--backend "xen": want auto, qemu or native`},
		{"accel with native", []string{"--backend", "native", "--accel", "tcg", "-o", out("b.zst")}, "--accel is QEMU's"},
		{"accel auto with native", []string{"--backend", "native", "--accel", "auto", "-o", out("c.zst")}, "--accel is QEMU's"},
		{"force-slow-kvm with qemu", []string{"--backend", "qemu", "--force-slow-kvm", "-o", out("d.zst")}, "--force-slow-kvm applies to --backend native only"},
		{"force-slow-kvm with auto", []string{"--force-slow-kvm", "-o", out("e.zst")}, "--force-slow-kvm applies to --backend native only"},
		{"unpack-kernel with qemu", []string{"--backend", "qemu", "--unpack-kernel", "-o", out("k.zst")}, "--unpack-kernel applies to --backend native only"},
		{"ELF guest with qemu", []string{"--backend", "qemu", "--kernel", elf, "-o", out("f.zst")}, "only --backend native runs it"},
		{"ELF guest with auto", []string{"--kernel", elf, "-o", out("g.zst")}, "only --backend native runs it"},
		{"ELF guest with --agent", []string{"--backend", "native", "--kernel", elf, "--agent", elf, "-o", out("h.zst")}, "--agent configures the guest agent"},
		{"ELF guest with --workers", []string{"--backend", "native", "--kernel", elf, "--workers", "2", "-o", out("i.zst")}, "--workers configures the guest agent"},
		{"ELF guest with --scenario", []string{"--backend", "native", "--kernel", elf, "--scenario", "steady", "-o", out("j.zst")}, "--scenario configures the guest agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A probe that fails the test: usage errors come first.
			o := recordOptions{kvmDevice: filepath.Join(dir, "kvm"), probeKVM: func(string, time.Duration) (kvm.ProbeResult, error) {
				t.Error("KVM probed before the flags were checked")
				return kvm.ProbeResult{}, errors.New("unreachable")
			}}
			code, stderr := recordWith(o, tt.args...)
			t.Log(strings.TrimSpace(stderr))
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, tt.want)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
	// The real command line maps the same way.
	code, _, stderr := ktstr("record", "--backend", "xen", "-o", out("z.zst"))
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, `--backend "xen"`)
}

// TestRecordNativeWithoutKVM: where the KVM device is missing or is not
// KVM, the native backend is an environment error (exit 3, one line)
// naming the fix, whatever the kernel; it runs on every host by pointing
// the backend at such a device.
func TestRecordNativeWithoutKVM(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "kvm")
	elf := fakeELF(t)
	tests := []struct {
		name   string
		device string
		args   []string
		want   []string
	}{
		{"missing, default kernel", missing, nil, []string{"open " + missing, "modprobe kvm_intel", "--backend qemu"}},
		{"missing, ELF guest", missing, []string{"--kernel", elf}, []string{"open " + missing, "modprobe kvm_intel", "--backend qemu"}},
		{"not a KVM device", os.DevNull, nil, []string{os.DevNull + " is not a KVM device", "--backend qemu"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trace := filepath.Join(dir, "n"+string(rune('0'+i))+".zst")
			args := append([]string{"--backend", "native", "-o", trace}, tt.args...)
			code, stderr := recordWith(recordOptions{kvmDevice: tt.device, probeKVM: kvm.ProbeDevice}, args...)
			assert.Equal(t, ExitEnv, code, stderr)
			for _, w := range tt.want {
				assert.Contains(t, stderr, w)
			}
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.NoFileExists(t, trace, "nothing recorded")
		})
	}

	// A device that vanishes between the probe and the boot is the same
	// environment error, from the backend's start.
	trace := filepath.Join(dir, "late.zst")
	code, stderr := recordWith(recordOptions{kvmDevice: missing, probeKVM: nativeKVM},
		"-q", "--backend", "native", "--kernel", elf, "-o", trace)
	assert.Equal(t, ExitEnv, code, stderr)
	assert.Contains(t, stderr, "modprobe kvm_intel")
	assert.Contains(t, stderr, "--backend qemu")
	assert.NoFileExists(t, trace, "a run that wrote nothing leaves no empty trace")
}

// TestRecordNativeEmulatedKVM: where KVM only emulates guest code a Linux
// kernel is refused (exit 3, naming --backend qemu) unless
// --force-slow-kvm, while a freestanding ELF guest goes ahead.
func TestRecordNativeEmulatedKVM(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "kvm") // where a run that got past the check stops
	o := recordOptions{kvmDevice: missing, probeKVM: emulatingKVM}

	code, stderr := recordWith(o, "--backend", "native", "--kernel", fakeBzImage(t), "-o", filepath.Join(dir, "a.zst"))
	assert.Equal(t, ExitEnv, code, stderr)
	assert.Contains(t, stderr, "only emulates guest code")
	assert.Contains(t, stderr, "a Linux guest cannot boot at emulator speed")
	assert.Contains(t, stderr, "--backend qemu")
	assert.Contains(t, stderr, "--force-slow-kvm")
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)

	// --force-slow-kvm gets past the check: the next step, the agent,
	// is the one that fails here.
	code, stderr = recordWith(o, "--backend", "native", "--force-slow-kvm", "--kernel", fakeBzImage(t),
		"--agent", filepath.Join(dir, "no-agent"), "-o", filepath.Join(dir, "b.zst"))
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "--agent")
	assert.NotContains(t, stderr, "emulat")

	// The ELF guest gets past the check to the boot, which needs the
	// device.
	code, stderr = recordWith(o, "-q", "--backend", "native", "--kernel", fakeELF(t), "-o", filepath.Join(dir, "c.zst"))
	assert.Equal(t, ExitEnv, code, stderr)
	assert.Contains(t, stderr, "open "+missing)
	assert.NotContains(t, stderr, "emulat")
}

// TestCheckKVMSpeed is the decision itself, with the note the summary
// prints.
func TestCheckKVMSpeed(t *testing.T) {
	native, err := nativeKVM("", 0)
	require.NoError(t, err)
	slow, err := emulatingKVM("", 0)
	require.NoError(t, err)
	tests := []struct {
		name         string
		res          kvm.ProbeResult
		freestanding bool
		force        bool
		refused      bool
		note         string
	}{
		{"native, Linux", native, false, false, false, "natively"},
		{"native, ELF", native, true, false, false, "natively"},
		{"emulated, Linux", slow, false, false, true, ""},
		{"emulated, Linux, forced", slow, false, true, false, "only emulates"},
		{"emulated, ELF", slow, true, false, false, "only emulates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := recordOptions{forceSlowKVM: tt.force}
			note, err := o.checkKVMSpeed(tt.res, tt.freestanding)
			if tt.refused {
				var ee *exitError
				require.ErrorAs(t, err, &ee)
				assert.Equal(t, ExitEnv, ee.code)
				return
			}
			require.NoError(t, err)
			assert.Contains(t, note, tt.note)
		})
	}
}

// TestRecordNativeTestGuest records the freestanding test guest with
// `ktstr record --backend native` (it runs even where KVM only emulates
// guest code) and replays the trace: the guest's SCDX ended the run
// (summary and END record), and the replay matches the live outcome with
// no violation.
func TestRecordNativeTestGuest(t *testing.T) {
	dir := t.TempDir()
	elf := testGuest(t, dir)

	trace := filepath.Join(dir, "guest.zst")
	code, _, stderr := ktstr("record", "-q", "--backend", "native", "--kernel", elf, "--cmdline", "stim=3",
		"--cpus", "1", "--mem", "128", "--timeout", "2m", "-o", trace)
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stderr, "recorded "+trace+": "+vmm.EndSchedExit)
	assert.Contains(t, stderr, "native backend")
	assert.Contains(t, stderr, "SCDX at")
	t.Logf("summary:\n%s", stderr)

	// The END record says the same.
	meta, end := traceEnd(t, trace)
	assert.Equal(t, "native", meta.Backend)
	require.NotNil(t, end, "the trace has an END record")
	assert.Equal(t, vmm.EndSchedExit, end.Reason)

	code, stdout, stderr := ktstr("replay", "--json", trace)
	require.Equal(t, ExitOK, code, stderr)
	var rep struct {
		Match      bool              `json:"match"`
		Violations []json.RawMessage `json:"violations"`
		Recorded   json.RawMessage   `json:"recorded"`
		Outcome    struct {
			Killed   bool `json:"killed"`
			SysRdy   bool `json:"sys_rdy"`
			Verdicts []struct {
				Tag string `json:"tag"`
			} `json:"verdicts"`
		} `json:"outcome"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.True(t, rep.Match)
	assert.Empty(t, rep.Violations)
	assert.NotEqual(t, "null", string(rep.Recorded), "the live outcome is in the trace")
	assert.True(t, rep.Outcome.Killed, "the guest's SCDX")
	assert.True(t, rep.Outcome.SysRdy)
	require.NotEmpty(t, rep.Outcome.Verdicts)
	assert.Equal(t, "SCDX", rep.Outcome.Verdicts[len(rep.Outcome.Verdicts)-1].Tag)

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

// testGuest returns the freestanding test guest (KTSTR_TEST_GUEST, or
// built into dir with gcc), skipping with the reason where there is no
// usable KVM device or no gcc.
func testGuest(t *testing.T, dir string) string {
	t.Helper()
	if f, err := os.OpenFile(kvm.DefaultDevice, os.O_RDWR, 0); err != nil {
		t.Skipf("no usable %s (%v): the native backend cannot run here", kvm.DefaultDevice, err)
	} else {
		f.Close()
	}
	if elf := os.Getenv(kvm.TestGuestEnv); elf != "" {
		return elf
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not found (apt-get install gcc): cannot build the test guest")
	}
	elf := filepath.Join(dir, "guest.elf")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, kvm.BuildTestGuest(ctx, filepath.Join("..", "..", kvm.TestGuestSource), elf))
	return elf
}

// traceEnd reads the trace at path and returns its metadata and END
// record (nil when it has none), failing on any read error.
func traceEnd(t *testing.T, path string) (capture.Meta, *capture.End) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	r, err := capture.NewReader(f)
	require.NoError(t, err)
	var end *capture.End
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Meta(), end
		}
		require.NoError(t, err)
		if rec.Kind == capture.KindEnd {
			end = rec.End
		}
	}
}
