package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/kernel"
	"github.com/ktstr/ktstr/replay"
	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/qemu"
)

// env is what every test needs: a kernel and a built agent.
type env struct {
	kernel kernel.Kernel
	agent  string
	root   string
}

// setupOnce finds QEMU and the kernel and builds the agent, once per
// test binary.
var setupOnce = sync.OnceValues(func() (env, error) {
	if err := (&qemu.Backend{}).Available(); err != nil {
		return env{}, skipError{"e2e: " + err.Error()}
	}
	dir, err := kernel.CacheDir()
	if err != nil {
		return env{}, skipError{"e2e: " + err.Error()}
	}
	k, err := kernel.Default(dir)
	if err != nil {
		return env{}, skipError{"e2e: " + err.Error()}
	}
	root, err := vmm.FindModuleRoot(".")
	if err != nil {
		return env{}, err
	}
	agentDir, err := os.MkdirTemp("", "ktstr-e2e-agent-")
	if err != nil {
		return env{}, err
	}
	agent := filepath.Join(agentDir, "ktstr-init")
	if err := vmm.BuildAgent(context.Background(), root, agent); err != nil {
		return env{}, err
	}
	return env{kernel: k, agent: agent, root: root}, nil
})

// qemuAccel settles QEMU's accelerator once per test binary (its KVM
// probe), as `ktstr record` does before the run clock starts.
var qemuAccel = sync.OnceValue(func() qemu.Backend {
	var b qemu.Backend
	_ = b.ChooseAccel()
	return b
})

// bootTries is how many times a run whose guest kernel died before
// SYS_RDY is tried: under multi-threaded TCG, QEMU 7.2 and the 6.12
// kernel were seen to panic early ("Fatal exception in interrupt") in
// about 1 boot in 4 on a loaded host. Each retry is logged.
const bootTries = 3

// skipError is a reason to skip rather than fail: something the tests
// need is not installed.
type skipError struct{ reason string }

func (e skipError) Error() string { return e.reason }

// setup returns the env, skipping the test (one line) where QEMU or a
// kernel is missing, and under -short.
func setup(tb testing.TB) env {
	tb.Helper()
	if testing.Short() {
		tb.Skip("e2e: skipped under -short (boots a real kernel)")
	}
	e, err := setupOnce()
	var skip skipError
	if errors.As(err, &skip) {
		tb.Skip(skip.reason)
	}
	require.NoError(tb, err)
	return e
}

// recording is one recorded run.
type recording struct {
	res    vmm.Result
	trace  []byte
	report *replay.Report
	recs   []capture.Record
}

// recordScenario boots the scenario on the default kernel under QEMU,
// records it, and replays the trace.
func recordScenario(t testing.TB, e env, scenario string, duration time.Duration) recording {
	t.Helper()
	return recordRun(t, e.agent, e.kernel, "", scenario, duration)
}

// recordRun boots scenario on k under QEMU with agent as /init (and
// scheduler, if not "", packed as the supervised scheduler), records
// the run, and replays the trace: the replay must match with no
// violation.
func recordRun(t testing.TB, agent string, k kernel.Kernel, scheduler, scenario string, duration time.Duration) recording {
	t.Helper()
	work, err := os.MkdirTemp("", "ktstr-e2e-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(work) })
	initrd := filepath.Join(work, "initrd.zst")
	require.NoError(t, vmm.BuildInitramfs(initrd, agent, scheduler))
	console := filepath.Join(work, "console.log")
	var trace bytes.Buffer
	var res vmm.Result
	for attempt := 1; ; attempt++ {
		trace.Reset()
		qb := qemuAccel()
		run := &vmm.Run{
			Backend: &qb,
			Config: vmm.Config{
				Kernel: k.Path, Initrd: initrd,
				Cmdline: vmm.Cmdline(vmm.GuestOptions{Scenario: scenario, Duration: duration, Workers: 4, Scheduler: scheduler}),
				CPUs:    2, MemMiB: 512, ConsoleLog: console, WorkDir: work,
			},
			Trace: &trace,
			Meta: capture.Meta{KernelPath: k.Path, KernelRelease: k.Release, KernelSHA256: k.SHA256,
				CPUs: 2, MemoryMiB: 512, Scenario: scenario, ToolVersion: "e2e"},
			Timeout:  duration + 3*time.Minute,
			Watchdog: duration + 2*time.Minute,
		}
		restore := run.MakeRoom() // as `ktstr record` runs
		res, err = run.Execute(context.Background())
		restore()
		require.NoError(t, err)
		b, _ := os.ReadFile(console)
		if panicked := bootPanic(res, string(b)); panicked != "" && attempt < bootTries {
			// Under multi-threaded TCG the kernel was seen to die while
			// patching its own text, before our agent ran: not what
			// these tests test, and not silent either.
			t.Logf("%s: the guest kernel died before SYS_RDY (%s); retrying", scenario, panicked)
			continue
		}
		break
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("events:\n%s", eventLog(t, trace.Bytes()))
		}
	})
	if t.Failed() || res.ExitStatus != 0 && scenario != "crash" {
		b, _ := os.ReadFile(console)
		t.Logf("console:\n%s", lastLines(string(b), 30))
	}
	if dir := os.Getenv("KTSTR_E2E_SAVE"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, scenario+".zst"), trace.Bytes(), 0o644))
	}
	rep, err := replay.Trace(bytes.NewReader(trace.Bytes()), scenario, replay.Options{})
	require.NoError(t, err)
	assert.True(t, rep.Match, "replay reproduces the live outcome: %v", rep.Diff)
	assert.Empty(t, rep.Violations)
	assert.Nil(t, rep.Truncation)
	t.Logf("%s: %s (%s); SYS_RDY %d ms; %d frames, %d bytes; accel %s",
		scenario, res.Reason, res.Detail, res.SysRdyNS/1e6, res.Stats.Frames, res.Stats.Bytes, res.Info["accel"])
	return recording{res: res, trace: trace.Bytes(), report: rep, recs: readAll(t, trace.Bytes())}
}

func readAll(t testing.TB, b []byte) []capture.Record {
	t.Helper()
	r, err := capture.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	var recs []capture.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs
		}
		require.NoError(t, err)
		rec.Data = append([]byte(nil), rec.Data...)
		rec.Detail = append(json.RawMessage(nil), rec.Detail...)
		recs = append(recs, rec)
	}
}

// bootPanic returns the console's panic line if the run ended with the
// guest dead before it sent SYS_RDY and the kernel panicked, else "".
func bootPanic(res vmm.Result, console string) string {
	if res.Reason != vmm.EndGuestDied || res.SysRdyNS >= 0 {
		return ""
	}
	return panicLine(console)
}

// recorded is what one `ktstr record` run of the binary said.
type recorded struct {
	out     string    // what it printed, stdout and stderr
	code    int       // its exit status
	console string    // the guest's console log
	start   time.Time // when its (last) try was started
}

// recordBinary runs the ktstr binary bin as `ktstr record --console
// FILE args...` in the repository root, with env added to its
// environment. A try that failed with the guest kernel dead (a "Kernel
// panic" on the console, see bootTries) is retried, saying so, as
// recordRun does for the coordinator; args that name an output file
// should carry --force so a retry may rewrite it.
func recordBinary(t testing.TB, e env, bin string, env []string, args ...string) recorded {
	t.Helper()
	for attempt := 1; ; attempt++ {
		console := filepath.Join(t.TempDir(), "console.log")
		cmd := exec.Command(bin, append([]string{"record", "--console", console}, args...)...)
		cmd.Dir = e.root
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		out, code := runExit(t, cmd)
		con, _ := os.ReadFile(console)
		r := recorded{out: out, code: code, console: string(con), start: start}
		if panicked := panicLine(r.console); code != 0 && panicked != "" && attempt < bootTries {
			t.Logf("ktstr record %v: the guest kernel died (%s); retrying", args, panicked)
			continue
		}
		return r
	}
}

// runExit runs cmd and returns what it printed (stdout and stderr) and
// its exit status; a command that cannot be run fails the test.
func runExit(t testing.TB, cmd *exec.Cmd) (string, int) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err, string(out))
	return string(out), 0
}

// panicLine returns the console's "Kernel panic" line, or "".
func panicLine(console string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "Kernel panic") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// eventLog lists a trace's EVENT records, one per line, with the
// registers of snapshot events left out: what a failed run's reader
// needs to see what the coordinator did and when.
func eventLog(t testing.TB, trace []byte) string {
	var b strings.Builder
	for _, rec := range readAll(t, trace) {
		if rec.Kind != capture.KindEvent {
			continue
		}
		var d map[string]any
		if json.Unmarshal(rec.Detail, &d) == nil {
			delete(d, "registers")
		}
		dj, _ := json.Marshal(d)
		fmt.Fprintf(&b, "%10.3f ms %s %s\n", float64(rec.TimeNS)/1e6, rec.Name, dj)
	}
	return b.String()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// verdictTags lists the tags of the outcome's verdicts.
func verdictTags(o dispatch.Outcome) map[string]int {
	m := map[string]int{}
	for _, v := range o.Verdicts {
		m[v.Tag.String()]++
	}
	return m
}

// testPayload decodes the run's TEST JSON.
func testPayload(t testing.TB, res vmm.Result) map[string]any {
	t.Helper()
	require.NotNil(t, res.TestResult, "the guest sent a TEST result")
	var v map[string]any
	require.NoError(t, json.Unmarshal(res.TestResult, &v))
	return v
}

func TestSteady(t *testing.T) {
	e := setup(t)
	r := recordScenario(t, e, "steady", 2*time.Second)
	res := r.res
	assert.Equal(t, vmm.EndPoweroff, res.Reason)
	assert.Equal(t, int32(0), res.ExitStatus)
	require.NotNil(t, res.GuestExit)
	assert.Equal(t, int32(0), *res.GuestExit)
	assert.True(t, res.Outcome.SysRdy)
	assert.Greater(t, res.SysRdyNS, int64(0))
	assert.Equal(t, uint16(3), res.Outcome.Step, "three steps")
	tags := verdictTags(res.Outcome)
	for _, tag := range []string{"SCEN", "SCST", "STIM", "STEN", "TEST", "EXIT", "SOUT", "SERR", "LIFE"} {
		assert.Positive(t, tags[tag], "a %s verdict", tag)
	}
	assert.Equal(t, dispatch.Rejected{}, res.Outcome.Rejected, "an honest guest provokes no rejection")
	tp := testPayload(t, res)
	assert.Equal(t, true, tp["pass"], "TEST: %s", res.TestResult)
	wl := tp["workload"].(map[string]any)
	assert.Len(t, wl["workers"], 4)
	assert.Len(t, wl["cgroups"], 2)
}

func TestSchedExit(t *testing.T) {
	e := setup(t)
	r := recordScenario(t, e, "sched-exit", 4*time.Second)
	res := r.res
	assert.Equal(t, vmm.EndSchedExit, res.Reason)
	assert.Equal(t, int32(0), res.ExitStatus)
	assert.True(t, res.Outcome.Killed)
	assert.Equal(t, uint64(1), res.Outcome.KillSignals)
	require.GreaterOrEqual(t, res.SchedExitNS, int64(0))
	// The guest's vCPUs are stopped before anything else (vmm.Freezer):
	// a QEMU machine that lost its Freeze went unnoticed once.
	require.GreaterOrEqual(t, res.FrozenNS, res.SchedExitNS, "the vCPUs were stopped after the SCDX")
	gone := time.Duration(res.GoneNS - res.SchedExitNS)
	t.Logf("SCDX to vCPUs stopped: %v, to VM gone: %v", time.Duration(res.FrozenNS-res.SchedExitNS), gone)
	assert.Less(t, gone, time.Second, "the run ends within 1 s of the SCDX frame")
	assert.Equal(t, vmm.ExitStopped, res.Exit.Reason)
	// SCDX carries the stand-in's status, 7.
	var scdx []dispatch.Verdict
	for _, v := range res.Outcome.Verdicts {
		if v.Tag == wire.SchedExit {
			scdx = append(scdx, v)
		}
	}
	require.Len(t, scdx, 1)
	assert.Nil(t, res.TestResult, "the host stopped the guest before the workload ended")
	// The SCDX frame is in the recorded TX stream.
	var tx []byte
	for _, rec := range r.recs {
		if rec.Kind == capture.KindData && rec.Dir == capture.TX {
			tx = append(tx, rec.Data...)
		}
	}
	assert.True(t, bytes.Contains(tx, wire.AppendFrame(nil, wire.SchedExit, []byte{7, 0, 0, 0})))
}

func TestSnapshot(t *testing.T) {
	e := setup(t)
	r := recordScenario(t, e, "snapshot", time.Second)
	res := r.res
	assert.Equal(t, vmm.EndPoweroff, res.Reason)
	assert.Equal(t, 2, res.Snapshots)
	require.Len(t, res.Outcome.SnapshotRequests, 2)
	assert.Equal(t, dispatch.SnapshotRequest{ID: 1, Kind: wire.SnapshotCapture, Tag: "snapshot-capture"}, res.Outcome.SnapshotRequests[0])
	tp := testPayload(t, res)
	assert.Equal(t, true, tp["pass"], "TEST: %s", res.TestResult)

	var rxFrames, snapEvents int
	for _, rec := range r.recs {
		switch {
		case rec.Kind == capture.KindData && rec.Dir == capture.RX:
			rxFrames++
		case rec.Kind == capture.KindEvent && rec.Name == "snapshot":
			snapEvents++
			if strings.Contains(string(rec.Detail), `"kind":1`) {
				assert.Contains(t, string(rec.Detail), `"RIP"`, "a capture stores the registers")
			}
		}
	}
	assert.Equal(t, 2, rxFrames, "each SNRP is recorded as RX")
	assert.Equal(t, 2, snapEvents)
}

func TestHostile(t *testing.T) {
	e := setup(t)
	r := recordScenario(t, e, "hostile", time.Second)
	res := r.res
	o := res.Outcome
	assert.Equal(t, vmm.EndPoweroff, res.Reason)
	tp := testPayload(t, res)
	prov := tp["provoked"].(map[string]any)
	rj := o.Rejected
	got := map[string]float64{
		"crc": float64(rj.CRC), "pad": float64(rj.Pad), "unknown_tag": float64(rj.UnknownTag),
		"forged_tag": float64(rj.ForgedTag), "shape": float64(rj.Shape), "oneshot_repeat": float64(rj.OneshotRepeat),
		"overflow": float64(rj.Overflow), "out_of_order": float64(rj.OutOfOrder), "oversize": float64(rj.Oversize),
		"resync_bytes": float64(rj.ResyncBytes),
	}
	for reason, want := range prov {
		assert.Positive(t, want.(float64), "the guest provokes %s", reason)
		if reason == "crc" {
			// The racing writers add torn frames on top.
			assert.GreaterOrEqual(t, got[reason], want.(float64), reason)
		} else {
			assert.Equal(t, want.(float64), got[reason], reason)
		}
	}
	assert.Len(t, prov, len(got), "every reject reason counted")
	assert.Zero(t, rj.TruncatedTailBytes)

	// Nothing promoted.
	assert.False(t, o.Killed, "no torn or forged SCDX stopped the run")
	assert.Zero(t, o.KillSignals)
	assert.Len(t, o.SnapshotRequests, dispatch.MaxSnapshotRequests)
	for _, s := range o.SnapshotRequests {
		assert.True(t, strings.HasPrefix(s.Tag, "flood-"), "only the intact flood requests are queued: %q", s.Tag)
	}
	require.NotNil(t, o.KASLR, "the one legitimate KADR")
	assert.NotEqual(t, uint64(0xdead0000), o.KASLR.PhysBase, "the repeated KADR did not overwrite it")
	assert.Equal(t, uint64(1), o.WatchdogPauses)
	for tag := range verdictTags(o) {
		assert.Contains(t, []string{"SCEN", "SCST", "STIM", "STEN", "TEST", "EXIT", "SOUT", "LIFE"}, tag)
	}
	assert.Equal(t, dispatch.MaxSnapshotRequests, res.Snapshots)
}

func TestCrashReportsCRSH(t *testing.T) {
	e := setup(t)
	r := recordScenario(t, e, "crash", time.Second)
	res := r.res
	require.NotNil(t, res.Crash)
	assert.Contains(t, string(res.Crash), "panic: deliberate panic")
	require.NotNil(t, res.GuestExit)
	assert.Equal(t, int32(70), *res.GuestExit)
	assert.Equal(t, int32(1), res.ExitStatus, "a crashed agent fails the recording")
}

// TestRecordReplayCLI runs the commands a user types.
func TestRecordReplayCLI(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "ktstr")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ktstr")
	build.Dir = e.root
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	trace := filepath.Join(dir, "steady.zst")
	rec := recordBinary(t, e, bin, nil, "--agent", e.agent, "--duration", "1s", "--force", "-o", trace)
	require.Zero(t, rec.code, rec.out)
	assert.Contains(t, rec.out, "SYS_RDY at")
	assert.Contains(t, rec.out, "recorded "+trace+": poweroff")

	out, err = exec.Command(bin, "replay", "--json", trace).Output()
	require.NoError(t, err, string(out))
	var rep struct {
		Match      bool     `json:"match"`
		Violations []string `json:"violations"`
	}
	require.NoError(t, json.Unmarshal(out, &rep))
	assert.True(t, rep.Match)
	assert.Empty(t, rep.Violations)

	// Bad input is exit 2 before anything boots.
	cmd := exec.Command(bin, "record", "--agent", e.agent, "--scenario", "nope", "-o", filepath.Join(dir, "x.zst"))
	out, err = cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.ExitCode(), string(out))
	assert.Contains(t, string(out), `unknown scenario "nope"`)

	// A missing kernel is exit 3 naming the fix.
	cmd = exec.Command(bin, "record", "--agent", e.agent, "-o", filepath.Join(dir, "y.zst"))
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "empty-cache"))
	out, err = cmd.CombinedOutput()
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 3, ee.ExitCode(), string(out))
	assert.Contains(t, string(out), "ktstr kernel fetch")
}

func TestBootPanic(t *testing.T) {
	const console = "[    1.37] Oops: int3\n[    1.374450] Kernel panic - not syncing: Fatal exception in interrupt\n"
	died := vmm.Result{Reason: vmm.EndGuestDied, SysRdyNS: -1}
	assert.Equal(t, "[    1.374450] Kernel panic - not syncing: Fatal exception in interrupt", bootPanic(died, console))
	// Positive controls: each condition alone is no boot panic.
	assert.Empty(t, bootPanic(died, "reboot: Power down\n"), "no panic on the console")
	assert.Empty(t, bootPanic(vmm.Result{Reason: vmm.EndGuestDied, SysRdyNS: 5}, console), "after SYS_RDY: the agent's run, tested as it is")
	assert.Empty(t, bootPanic(vmm.Result{Reason: vmm.EndPoweroff, SysRdyNS: -1}, console), "the guest did not die")
}
