package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// fakeSchedExt is a sched_ext sysfs directory, a SysRq trigger file and
// a stand-in BPF scheduler (a shell script) that plays the kernel's
// part: it enables itself, and on SysRq-S disables itself and exits.
type fakeSchedExt struct {
	sysfs, sysrq string
}

func newFakeSchedExt(t *testing.T, state string) fakeSchedExt {
	t.Helper()
	dir := t.TempDir()
	f := fakeSchedExt{sysfs: filepath.Join(dir, "sched_ext"), sysrq: filepath.Join(dir, "sysrq-trigger")}
	require.NoError(t, os.MkdirAll(f.sysfs, 0o755))
	for name, v := range map[string]string{"state": state, "switch_all": "0", "enable_seq": "0", "nr_rejected": "0"} {
		require.NoError(t, os.WriteFile(filepath.Join(f.sysfs, name), []byte(v+"\n"), 0o644))
	}
	return f
}

// scheduler writes a stand-in scheduler named name running body (sh)
// and returns its path. $SYSFS and $SYSRQ name the fake files.
func (f fakeSchedExt) scheduler(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	script := fmt.Sprintf("#!/bin/sh\nSYSFS=%q\nSYSRQ=%q\n%s\n", f.sysfs, f.sysrq, body)
	require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
	return path
}

// enableBody is a well-behaved scheduler: it registers ops "simple",
// waits for SysRq-S, is disabled, reports like scx_simple and exits 0.
const enableBody = `echo loading
mkdir -p "$SYSFS/root"; echo simple > "$SYSFS/root/ops"
echo 1 > "$SYSFS/switch_all"; echo 1 > "$SYSFS/enable_seq"
echo enabled > "$SYSFS/state"
while [ "$(cat "$SYSRQ" 2>/dev/null)" != S ]; do sleep 0.02; done
echo disabled > "$SYSFS/state"; rm -f "$SYSFS/root/ops"
echo "EXIT: disabled by sysrq-S" >&2
exit 0`

func (f fakeSchedExt) env() schedExtEnv {
	return schedExtEnv{
		sysfs: f.sysfs,
		sysrq: f.sysrq,
		workload: func(ctx context.Context, a *agent, n int, d time.Duration, onStart func() error) (workloadResult, error) {
			return workloadResult{Workers: []workerResult{{ID: 0, Cgroup: cgroupA, CPUNS: 1}}}, nil
		},
		enableTimeout: 5 * time.Second,
		ejectTimeout:  5 * time.Second,
		hostTimeout:   50 * time.Millisecond,
	}
}

// runFake runs the scenario with sched as ktstr.scheduler and returns
// its status, error and the frames it sent (waiting for an SCDX when
// wantSCDX is set).
func runFake(t *testing.T, env schedExtEnv, sched string, wantSCDX bool) (int, error, []frameSeen) {
	t.Helper()
	var port syncBuffer
	cfg := defaultConfig()
	cfg.Scenario, cfg.Scheduler = "sched-ext", sched
	a := newAgent(cfg, &port, io.Discard)
	code, err := runSchedExt(context.Background(), a, env)
	// The supervisor sends SCDX right after the scheduler's exit, which
	// the scenario may have seen first; give it a moment.
	var fs []frameSeen
	deadline := time.Now().Add(2 * time.Second)
	for {
		fs = frames(t, port.Bytes())
		if !wantSCDX || indexOf(fs, wire.SchedExit) >= 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, fr := range fs {
		require.True(t, fr.intact)
	}
	return code, err, fs
}

func findFrames(fs []frameSeen, tag wire.Tag) []frameSeen {
	var out []frameSeen
	for _, f := range fs {
		if f.tag == tag {
			out = append(out, f)
		}
	}
	return out
}

func indexOf(fs []frameSeen, tag wire.Tag) int {
	for i, f := range fs {
		if f.tag == tag {
			return i
		}
	}
	return -1
}

func status(t *testing.T, f frameSeen) int32 {
	t.Helper()
	require.Len(t, f.payload, 4)
	return int32(binary.LittleEndian.Uint32([]byte(f.payload)))
}

// The whole scenario against the stand-in: loaded, judged, ejected with
// SysRq-S, SCDX with the scheduler's status 0; the host here never stops
// the run, so a final TEST says so.
func TestSchedExtScenarioEjects(t *testing.T) {
	f := newFakeSchedExt(t, "disabled")
	code, err, fs := runFake(t, f.env(), f.scheduler(t, "scx_simple", enableBody), true)
	require.NoError(t, err)
	assert.Equal(t, 1, code, "the host did not stop the run")

	tests := findFrames(fs, wire.TestResult)
	require.Len(t, tests, 2)
	var first, last schedExtResult
	require.NoError(t, json.Unmarshal([]byte(tests[0].payload), &first))
	require.NoError(t, json.Unmarshal([]byte(tests[1].payload), &last))
	assert.True(t, first.Pass, first.Reason)
	assert.Equal(t, "simple", first.Loaded.Ops)
	assert.Equal(t, "enabled", first.Loaded.State)
	assert.True(t, first.Loaded.SwitchAll)
	assert.Positive(t, first.EnableNS)
	assert.False(t, last.Pass)
	assert.Contains(t, last.Reason, "host did not stop the run")

	scdx := findFrames(fs, wire.SchedExit)
	require.Len(t, scdx, 1)
	assert.Equal(t, int32(0), status(t, scdx[0]))
	assert.Less(t, indexOf(fs, wire.TestResult), indexOf(fs, wire.SchedExit), "the verdict goes out before the ejection")
	b, err := os.ReadFile(f.sysrq)
	require.NoError(t, err)
	assert.Equal(t, "S", string(b))

	var log strings.Builder
	for _, fr := range findFrames(fs, wire.SchedLog) {
		log.WriteString(fr.payload)
	}
	assert.Contains(t, log.String(), "EXIT: disabled by sysrq-S")
	assert.Equal(t, wire.Scenario, fs[0].tag)
	assert.Equal(t, wire.ScenarioStart, fs[1].tag)
}

func TestSchedExtScenarioFailures(t *testing.T) {
	t.Run("scheduler fails to load", func(t *testing.T) {
		f := newFakeSchedExt(t, "disabled")
		code, err, fs := runFake(t, f.env(), f.scheduler(t, "scx_simple", `echo "libbpf: failed to load" >&2; exit 3`), true)
		assert.Equal(t, 1, code)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "exited with status 3 before sched_ext was enabled")
		scdx := findFrames(fs, wire.SchedExit)
		require.Len(t, scdx, 1)
		assert.Equal(t, int32(3), status(t, scdx[0]))
		assert.Empty(t, findFrames(fs, wire.TestResult))
	})
	t.Run("kernel without sched_ext", func(t *testing.T) {
		f := newFakeSchedExt(t, "disabled")
		env := f.env()
		env.sysfs = filepath.Join(t.TempDir(), "absent")
		_, err, fs := runFake(t, env, f.scheduler(t, "scx_simple", enableBody), false)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "has no sched_ext")
		assert.Empty(t, findFrames(fs, wire.SchedExit), "no scheduler was started")
	})
	t.Run("a scheduler already loaded", func(t *testing.T) {
		f := newFakeSchedExt(t, "enabled")
		_, err, _ := runFake(t, f.env(), f.scheduler(t, "scx_simple", enableBody), false)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `is "enabled" before the scheduler starts`)
	})
	t.Run("wrong ops name fails the verdict", func(t *testing.T) {
		f := newFakeSchedExt(t, "disabled")
		_, err, fs := runFake(t, f.env(), f.scheduler(t, "scx_other", enableBody), true)
		require.NoError(t, err)
		tests := findFrames(fs, wire.TestResult)
		require.NotEmpty(t, tests)
		var tr schedExtResult
		require.NoError(t, json.Unmarshal([]byte(tests[0].payload), &tr))
		assert.False(t, tr.Pass)
		assert.Contains(t, tr.Reason, `want "other"`)
	})
	t.Run("no SysRq: the scheduler is killed", func(t *testing.T) {
		f := newFakeSchedExt(t, "disabled")
		env := f.env()
		env.sysrq = filepath.Join(t.TempDir(), "absent", "sysrq-trigger")
		env.ejectTimeout = 200 * time.Millisecond
		_, err, fs := runFake(t, env, f.scheduler(t, "scx_simple", enableBody), true)
		require.NoError(t, err)
		scdx := findFrames(fs, wire.SchedExit)
		require.Len(t, scdx, 1)
		assert.Equal(t, int32(128+9), status(t, scdx[0]))
	})
	t.Run("never enabled", func(t *testing.T) {
		f := newFakeSchedExt(t, "disabled")
		env := f.env()
		env.enableTimeout = 100 * time.Millisecond
		_, err, _ := runFake(t, env, f.scheduler(t, "scx_simple", "exec sleep 5"), false)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `not "enabled", after`)
	})
}

func TestReadSchedExt(t *testing.T) {
	f := newFakeSchedExt(t, "enabled")
	require.NoError(t, os.MkdirAll(filepath.Join(f.sysfs, "root"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.sysfs, "root", "ops"), []byte("simple\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(f.sysfs, "switch_all"), []byte("1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(f.sysfs, "enable_seq"), []byte("4\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(f.sysfs, "nr_rejected"), []byte("junk\n"), 0o644))
	st, err := readSchedExt(f.sysfs)
	require.NoError(t, err)
	assert.Equal(t, schedExtStatus{State: "enabled", Ops: "simple", SwitchAll: true, EnableSeq: 4}, st)

	_, err = readSchedExt(filepath.Join(t.TempDir(), "none"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ktstr kernel build --sched-ext")
}

func TestWaitSchedExt(t *testing.T) {
	f := newFakeSchedExt(t, "enabling")
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = os.WriteFile(filepath.Join(f.sysfs, "state"), []byte("enabled\n"), 0o644)
	}()
	st, err := waitSchedExt(context.Background(), f.sysfs, "enabled", 5*time.Second, nil)
	require.NoError(t, err)
	assert.Equal(t, "enabled", st.State)

	done := make(chan struct{})
	close(done)
	_, err = waitSchedExt(context.Background(), f.sysfs, "disabled", 5*time.Second, done)
	require.ErrorIs(t, err, errSchedulerGone)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = waitSchedExt(ctx, f.sysfs, "disabled", 5*time.Second, nil)
	require.ErrorIs(t, err, context.Canceled)
}

func TestJudgeSchedExt(t *testing.T) {
	loaded := schedExtStatus{State: "enabled", Ops: "simple", SwitchAll: true, EnableSeq: 1}
	ok := workloadResult{Workers: []workerResult{{ID: 0}, {ID: 1}}}
	tests := []struct {
		name   string
		path   string
		loaded schedExtStatus
		after  schedExtStatus
		res    workloadResult
		reason string
	}{
		{"positive control", "/bin/scx_simple", loaded, loaded, ok, ""},
		{"other ops", "/bin/scx_qmap", loaded, loaded, ok, `want "qmap"`},
		{"partial switch", "/bin/scx_simple", schedExtStatus{State: "enabled", Ops: "simple", EnableSeq: 1}, loaded, ok, "did not switch all"},
		{"ejected during the workload", "/bin/scx_simple", loaded, schedExtStatus{State: "disabled", EnableSeq: 1}, ok, "did not stay enabled"},
		{"re-enabled during the workload", "/bin/scx_simple", loaded, schedExtStatus{State: "enabled", Ops: "simple", EnableSeq: 2}, ok, "did not stay enabled"},
		{"worker failed", "/bin/scx_simple", loaded, loaded, workloadResult{Workers: []workerResult{{ID: 3, Status: 1}}}, "worker 3 failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pass, reason := judgeSchedExt(tc.path, tc.loaded, tc.after, tc.res)
			assert.Equal(t, tc.reason == "", pass)
			if tc.reason == "" {
				assert.Empty(t, reason)
			} else {
				assert.Contains(t, reason, tc.reason)
			}
		})
	}
}

func TestOpsName(t *testing.T) {
	assert.Equal(t, "simple", opsName("/bin/scx_simple"))
	assert.Equal(t, "custom", opsName("custom"))
}
