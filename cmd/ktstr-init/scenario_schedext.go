package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// The sched-ext scenario needs a kernel built with CONFIG_SCHED_CLASS_EXT
// (`ktstr kernel build --sched-ext`) and a BPF scheduler in the
// initramfs.
const (
	// schedExtSysfs is the kernel's sched_ext directory.
	schedExtSysfs = "/sys/kernel/sched_ext"
	// sysrqTrigger takes SysRq keys; 'S' makes the kernel eject the
	// running BPF scheduler, as it does one that fails.
	sysrqTrigger = "/proc/sysrq-trigger"
	// defaultSchedExtScheduler is started when ktstr.scheduler is not given.
	defaultSchedExtScheduler = "/bin/scx_simple"

	// schedExtEnableTimeout bounds loading and verifying the BPF
	// scheduler, which is slow under emulation.
	schedExtEnableTimeout = 60 * time.Second
	// schedExtEjectTimeout bounds the kernel's disabling of the
	// scheduler and the scheduler's exit after SysRq-S (scx_simple
	// notices within a second); then it is killed.
	schedExtEjectTimeout = 10 * time.Second
	// schedExtHostTimeout is how long the agent waits, after SCDX, for
	// the host to stop the run before reporting that it did not.
	schedExtHostTimeout = 10 * time.Second
	schedExtPoll        = 20 * time.Millisecond
)

// schedExtScenario loads a real sched_ext scheduler, checks through
// sysfs that the kernel enabled it, runs the workload under it, then has
// the kernel eject it with SysRq-S. The scheduler's exit goes out as
// SCDX with its status, and the host stops the run on it.
func schedExtScenario() scenario {
	return scenario{
		name:          "sched-ext",
		help:          "load a BPF scheduler (ktstr.scheduler, default /bin/scx_simple), run the workload under it, eject it with SysRq-S; SCDX ends the run",
		ownsScheduler: true,
		run: func(ctx context.Context, a *agent) (int, error) {
			return runSchedExt(ctx, a, guestSchedExtEnv())
		},
	}
}

// schedExtEnv is what the scenario touches of the guest, so tests can
// point it at files of their own and a stand-in workload.
type schedExtEnv struct {
	sysfs    string // /sys/kernel/sched_ext
	sysrq    string // /proc/sysrq-trigger
	workload func(ctx context.Context, a *agent, n int, d time.Duration, onStart func() error) (workloadResult, error)

	enableTimeout, ejectTimeout, hostTimeout time.Duration
}

// guestSchedExtEnv is the real guest's.
func guestSchedExtEnv() schedExtEnv {
	return schedExtEnv{
		sysfs:         schedExtSysfs,
		sysrq:         sysrqTrigger,
		workload:      runWorkers,
		enableTimeout: schedExtEnableTimeout,
		ejectTimeout:  schedExtEjectTimeout,
		hostTimeout:   schedExtHostTimeout,
	}
}

// schedExtStatus is what the kernel says about sched_ext.
type schedExtStatus struct {
	State      string `json:"state"`                 // enabled, disabled, enabling, disabling
	Ops        string `json:"ops,omitempty"`         // name of the loaded scheduler (root/ops)
	SwitchAll  bool   `json:"switch_all"`            // every normal task runs under it
	EnableSeq  int64  `json:"enable_seq"`            // times a scheduler was enabled since boot
	NrRejected int64  `json:"nr_rejected,omitempty"` // tasks the scheduler refused
}

// readSchedExt reads the sched_ext sysfs directory dir. Only state is
// required; root/ops exists only while a scheduler is loaded.
func readSchedExt(dir string) (schedExtStatus, error) {
	var st schedExtStatus
	b, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, fmt.Errorf("this kernel has no sched_ext (%s missing); boot one built by 'ktstr kernel build --sched-ext'", dir)
		}
		return st, fmt.Errorf("read sched_ext state: %w", err)
	}
	st.State = strings.TrimSpace(string(b))
	if b, err := os.ReadFile(filepath.Join(dir, "root", "ops")); err == nil {
		st.Ops = strings.TrimSpace(string(b))
	}
	st.SwitchAll = readSysfsInt(filepath.Join(dir, "switch_all")) == 1
	st.EnableSeq = readSysfsInt(filepath.Join(dir, "enable_seq"))
	st.NrRejected = readSysfsInt(filepath.Join(dir, "nr_rejected"))
	return st, nil
}

// readSysfsInt reads an integer attribute, 0 when it is absent or not a number.
func readSysfsInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// errSchedulerGone reports that the scheduler exited while the scenario
// waited on the kernel.
var errSchedulerGone = errors.New("the scheduler exited")

// waitSchedExt polls dir until its state is want, the scheduler exits
// (done closes), ctx ends or timeout passes.
func waitSchedExt(ctx context.Context, dir, want string, timeout time.Duration, done <-chan struct{}) (schedExtStatus, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(schedExtPoll)
	defer tick.Stop()
	for {
		st, err := readSchedExt(dir)
		if err != nil {
			return st, err
		}
		if st.State == want {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-done:
			// One last look: the state may have changed as it exited.
			if st, err := readSchedExt(dir); err == nil && st.State == want {
				return st, nil
			}
			return st, errSchedulerGone
		case <-deadline.C:
			return st, fmt.Errorf("sched_ext state is %q, not %q, after %v", st.State, want, timeout)
		case <-tick.C:
		}
	}
}

// opsName is the sched_ext ops name a scheduler binary registers:
// scx_simple registers "simple".
func opsName(path string) string {
	return strings.TrimPrefix(filepath.Base(path), "scx_")
}

// schedExtResult is the TEST payload of the sched-ext scenario, sent
// before the ejection (the host stops the run on the SCDX that follows).
type schedExtResult struct {
	testResult
	Loaded   schedExtStatus `json:"loaded"`    // the kernel's view once the scheduler was enabled
	After    schedExtStatus `json:"after"`     // the kernel's view after the workload
	EnableNS int64          `json:"enable_ns"` // from starting the scheduler to state "enabled"
}

func runSchedExt(ctx context.Context, a *agent, env schedExtEnv) (int, error) {
	cfg := a.cfg
	path := cfg.Scheduler
	if path == "" {
		path = defaultSchedExtScheduler
	}
	if err := a.sendJSON(wire.Scenario, map[string]any{
		"scenario": "sched-ext", "phase": "begin", "scheduler": path,
		"workers": cfg.Workers, "duration_ns": cfg.Duration,
	}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "sched-ext", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	before, err := readSchedExt(env.sysfs)
	if err != nil {
		return 1, err
	}
	if before.State != "disabled" {
		return 1, fmt.Errorf("sched_ext is %q before the scheduler starts; want disabled", before.State)
	}

	// Step 1: start the scheduler and wait for the kernel to enable it.
	if err := a.sendStep(1, "start scheduler", map[string]any{"path": path, "sched_ext": before}); err != nil {
		return 1, err
	}
	started := time.Now()
	s, err := a.startScheduler(path)
	if err != nil {
		return 1, err
	}
	defer func() {
		select {
		case <-s.done:
			// It exited by itself; the supervisor reports that as SCDX,
			// which stop would suppress.
		default:
			s.stop()
		}
	}()
	loaded, err := waitSchedExt(ctx, env.sysfs, "enabled", env.enableTimeout, s.done)
	if errors.Is(err, errSchedulerGone) {
		// The supervisor has sent SCDX: a scheduler that fails to load
		// ends the run like one that fails later.
		return 1, fmt.Errorf("scheduler %s exited with status %d before sched_ext was enabled (its output is in SCLG)", path, s.status)
	}
	if err != nil {
		return 1, err
	}
	enableNS := int64(time.Since(started))
	a.logf("sched_ext enabled: ops %q after %v", loaded.Ops, time.Duration(enableNS))
	if err := a.sendJSON(wire.StepEnd, map[string]any{"step": 1, "t_ns": a.since(), "sched_ext": loaded, "enable_ns": enableNS}); err != nil {
		return 1, err
	}

	// Step 2: the steady workload under the BPF scheduler.
	if err := a.sendStep(2, "run workers", map[string]any{"workers": cfg.Workers, "duration_ns": cfg.Duration}); err != nil {
		return 1, err
	}
	began := time.Now()
	res, err := env.workload(ctx, a, cfg.Workers, cfg.Duration, nil)
	if err != nil {
		return 1, err
	}
	after, err := readSchedExt(env.sysfs)
	if err != nil {
		return 1, err
	}
	tr := schedExtResult{
		testResult: testResult{Scenario: "sched-ext", DurationNS: int64(time.Since(began)), Workload: res, Pass: true},
		Loaded:     loaded, After: after, EnableNS: enableNS,
	}
	tr.Pass, tr.Reason = judgeSchedExt(path, loaded, after, res)
	if err := a.sendJSON(wire.TestResult, tr); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.StepEnd, map[string]any{"step": 2, "t_ns": a.since(), "pass": tr.Pass}); err != nil {
		return 1, err
	}

	// Step 3: the kernel ejects the scheduler; its exit sends SCDX.
	if err := a.sendStep(3, "eject scheduler (SysRq-S)", map[string]any{"sysrq": "S"}); err != nil {
		return 1, err
	}
	if err := os.WriteFile(env.sysrq, []byte("S"), 0); err != nil {
		a.logf("SysRq-S: %v; killing the scheduler instead", err)
		_ = s.cmd.Process.Kill()
	}
	if st, err := waitSchedExt(ctx, env.sysfs, "disabled", env.ejectTimeout, nil); err != nil {
		a.logf("after SysRq-S: %v", err)
	} else {
		a.logf("sched_ext disabled by SysRq-S (enable_seq %d)", st.EnableSeq)
	}
	select {
	case <-s.done:
	case <-time.After(env.ejectTimeout):
		a.logf("scheduler still running %v after SysRq-S; killing it", env.ejectTimeout)
		_ = s.cmd.Process.Kill()
		<-s.done
	case <-ctx.Done():
		return 1, ctx.Err()
	}
	a.logf("scheduler exited with status %d after the ejection; waiting for the host to stop the run", s.status)

	// Still here after a while: the host did not stop the run on SCDX.
	select {
	case <-time.After(env.hostTimeout):
	case <-ctx.Done():
		return 1, ctx.Err()
	}
	st := s.status
	tr.Scheduler = &st
	tr.Pass, tr.Reason = false, "the scheduler was ejected but the host did not stop the run on SCDX"
	if err := a.sendJSON(wire.TestResult, tr); err != nil {
		return 1, err
	}
	return 1, nil
}

// judgeSchedExt says whether the scheduler ran the workload: the
// kernel enabled the expected ops with every task switched to it, kept
// it enabled through the workload, and every worker finished cleanly.
func judgeSchedExt(path string, loaded, after schedExtStatus, res workloadResult) (bool, string) {
	if want := opsName(path); loaded.Ops != want {
		return false, fmt.Sprintf("sched_ext runs ops %q, want %q", loaded.Ops, want)
	}
	if !loaded.SwitchAll {
		return false, "the scheduler did not switch all tasks to sched_ext"
	}
	if after.State != "enabled" || after.EnableSeq != loaded.EnableSeq {
		return false, fmt.Sprintf("sched_ext did not stay enabled through the workload (state %q, enable_seq %d then %d)",
			after.State, loaded.EnableSeq, after.EnableSeq)
	}
	for _, w := range res.Workers {
		if w.Error != "" || w.Status != 0 {
			return false, fmt.Sprintf("worker %d failed (status %d %s)", w.ID, w.Status, w.Error)
		}
	}
	return true, ""
}
