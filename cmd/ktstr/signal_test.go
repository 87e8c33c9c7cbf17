package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/vmm"
)

// idleBackend stands for a VMM whose guest boots (an SRDY on the bulk
// port, a line on its console) and then runs until the host stops it,
// or, with poweroff, powers off by itself.
type idleBackend struct{ poweroff bool }

func (idleBackend) Name() string { return "idle" }

func (b idleBackend) Start(_ context.Context, cfg vmm.Config) (vmm.Machine, error) {
	if cfg.ConsoleLog != "" {
		if err := os.WriteFile(cfg.ConsoleLog, []byte("idle guest: booted\nidle guest: waiting to be stopped\n"), 0o644); err != nil {
			return nil, err
		}
	}
	m := &idleMachine{stopped: make(chan struct{}), first: wire.AppendFrame(nil, wire.SysRdy, nil), exit: vmm.ExitStopped}
	if b.poweroff {
		m.exit = vmm.ExitPoweroff
		m.Stop()
	}
	return m, nil
}

type idleMachine struct {
	exit    vmm.ExitReason
	once    sync.Once
	stopped chan struct{}
	mu      sync.Mutex
	first   []byte // delivered by the first Read
}

func (m *idleMachine) Bulk() io.ReadWriter { return idlePort{m} }

type idlePort struct{ m *idleMachine }

func (p idlePort) Read(b []byte) (int, error) {
	p.m.mu.Lock()
	first := p.m.first
	p.m.first = nil
	p.m.mu.Unlock()
	if first != nil {
		return copy(b, first), nil
	}
	<-p.m.stopped
	return 0, io.EOF
}

func (p idlePort) Write(b []byte) (int, error) { return len(b), nil }

func (m *idleMachine) Pause() error                        { return nil }
func (m *idleMachine) Resume() error                       { return nil }
func (m *idleMachine) Registers() (json.RawMessage, error) { return json.RawMessage(`{}`), nil }
func (m *idleMachine) Stop() error                         { m.once.Do(func() { close(m.stopped) }); return nil }
func (m *idleMachine) Wait() (vmm.Exit, error) {
	<-m.stopped
	return vmm.Exit{Reason: m.exit}, nil
}
func (m *idleMachine) Info() map[string]string { return map[string]string{"accel": "idle"} }

// TestRecordSignalChild is the child of TestRecordInterrupted: `ktstr
// record` with the arguments in KTSTR_RECORD_ARGS, on idleBackend.
func TestRecordSignalChild(t *testing.T) {
	args, ok := os.LookupEnv("KTSTR_RECORD_ARGS")
	if !ok {
		t.Skip("only runs as the child of TestRecordInterrupted")
	}
	if v := os.Getenv("KTSTR_CHILD_FSIZE"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		require.NoError(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: n}))
	}
	o := recordOptions{fakeBackend: idleBackend{poweroff: os.Getenv("KTSTR_RECORD_POWEROFF") != ""}}
	os.Exit(report(os.Stderr, o.run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr)))
}

// TestRecordInterrupted: a recording ended by SIGINT or SIGTERM stops
// the guest, keeps the trace under its -o name with an END record
// (reason signal), keeps the console log where the summary says, and
// exits 130 or 143.
func TestRecordInterrupted(t *testing.T) {
	tests := []struct {
		name    string
		sig     syscall.Signal
		code    int
		console bool // --console FILE, else the default temporary log
	}{
		{"SIGINT, default console log", syscall.SIGINT, ExitInterrupted, false},
		{"SIGTERM, default console log", syscall.SIGTERM, ExitTerminated, false},
		{"SIGINT, --console", syscall.SIGINT, ExitInterrupted, true},
		{"SIGTERM, --console", syscall.SIGTERM, ExitTerminated, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			trace := filepath.Join(dir, "run.zst")
			args := []string{"--backend", "native", "--kernel", fakeELF(t), "-o", trace}
			console := filepath.Join(dir, "console.log")
			if tt.console {
				args = append(args, "--console", console)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestRecordSignalChild$")
			cmd.Env = append(os.Environ(), "KTSTR_RECORD_ARGS="+strings.Join(args, "\x1f"), "TMPDIR="+dir)
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			var lines []string
			running := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				sc := bufio.NewScanner(stderr)
				signalled := false
				for sc.Scan() {
					lines = append(lines, sc.Text())
					if !signalled && strings.Contains(sc.Text(), "running") {
						signalled = true
						close(running)
					}
				}
			}()
			select {
			case <-running:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("the recording never reached SYS_RDY")
			}
			require.NoError(t, cmd.Process.Signal(tt.sig))
			<-done
			err = cmd.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "stderr:\n%s", strings.Join(lines, "\n"))
			out := strings.Join(lines, "\n")
			assert.Equal(t, tt.code, ee.ExitCode(), out)
			assertNoCrash(t, out)
			last := lines[len(lines)-1]
			assert.Contains(t, last, "interrupted by "+map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[tt.sig])
			assert.Contains(t, last, "the trace "+trace+" holds the run")

			// The trace is kept, whole, with its END record.
			require.FileExists(t, trace, "the trace is kept under its -o name")
			_, end := traceEnd(t, trace)
			require.NotNil(t, end, "the trace ends with an END record")
			assert.Equal(t, vmm.EndSignal, end.Reason)

			// The console log is where the summary says, and holds the
			// guest's lines.
			m := regexp.MustCompile(`last console lines \(([^)]+)\)`).FindStringSubmatch(out)
			require.NotNil(t, m, "the summary names the console log:\n%s", out)
			if tt.console {
				assert.Equal(t, console, m[1])
			} else {
				assert.Equal(t, dir, filepath.Dir(m[1]), "in TMPDIR, not in the removed work directory")
			}
			b, err := os.ReadFile(m[1])
			require.NoError(t, err, "the console log named is kept")
			assert.Contains(t, string(b), "idle guest: booted")
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			for _, e := range entries {
				assert.NotContains(t, e.Name(), ".tmp-", "no temporary output left")
				assert.False(t, strings.HasPrefix(e.Name(), "ktstr-rec-"), "the work directory is removed")
			}
		})
	}
}

// TestRecordNotInterrupted is the control of TestRecordInterrupted: the
// same run, ended by the guest powering off, exits 0 with its trace, and
// removes the default console log it did not need to show.
func TestRecordNotInterrupted(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "run.zst")
	args := []string{"--backend", "native", "--kernel", fakeELF(t), "-o", trace}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordSignalChild$")
	cmd.Env = append(os.Environ(), "KTSTR_RECORD_ARGS="+strings.Join(args, "\x1f"), "TMPDIR="+dir, "KTSTR_RECORD_POWEROFF=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "recorded "+trace+": "+vmm.EndPoweroff)
	assert.NotContains(t, string(out), "interrupted")
	assert.FileExists(t, trace)
	logs, err := filepath.Glob(filepath.Join(dir, "ktstr-console-*"))
	require.NoError(t, err)
	assert.Empty(t, logs, "a run that succeeded leaves no console log behind")
}

// TestRecordTraceWriteFailure: a trace that cannot be written (a file
// size limit makes the first write fail) ends the recording with exit 2
// and one line, leaves nothing under the -o name and keeps what was
// written in the temporary file it names; the same run
// without the limit records it.
func TestRecordTraceWriteFailure(t *testing.T) {
	for _, limit := range []string{"64", ""} {
		dir := t.TempDir()
		trace := filepath.Join(dir, "run.zst")
		args := []string{"-q", "--backend", "native", "--kernel", fakeELF(t), "-o", trace}
		cmd := exec.Command(os.Args[0], "-test.run=^TestRecordSignalChild$")
		cmd.Env = append(os.Environ(), "KTSTR_RECORD_ARGS="+strings.Join(args, "\x1f"), "TMPDIR="+dir, "KTSTR_RECORD_POWEROFF=1")
		if limit != "" {
			cmd.Env = append(cmd.Env, "KTSTR_CHILD_FSIZE="+limit)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if limit == "" {
			require.NoError(t, err, "control: %s", stderr.String())
			assert.FileExists(t, trace)
			continue
		}
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, stderr.String())
		assert.Equal(t, ExitUsage, ee.ExitCode(), stderr.String())
		assertOneLineError(t, stderr.String())
		assert.Contains(t, stderr.String(), "writing the trace "+trace)
		assert.Contains(t, stderr.String(), "file too large")
		assert.NoFileExists(t, trace, "a trace that could not be finished is not put in place")
		// Nothing recorded is lost: what was written stays in the
		// temporary file, which the error names.
		kept, _ := filepath.Glob(filepath.Join(dir, ".run.zst.tmp-*"))
		require.Len(t, kept, 1, stderr.String())
		assert.Contains(t, stderr.String(), "the trace up to then is kept as "+kept[0])
		fi, err := os.Stat(kept[0])
		require.NoError(t, err)
		assert.EqualValues(t, 64, fi.Size(), "it holds the bytes written before the limit")
	}
}

// TestReplayMutateInterrupted: SIGINT or SIGTERM during a long mutation
// campaign ends it with what it found: the report is printed, marked
// interrupted (JSON: "interrupted": true), and the exit status is
// 128 + the signal. Control: the same campaign, short, ends 0 and
// unmarked.
func TestReplayMutateInterrupted(t *testing.T) {
	dir := t.TempDir()
	good := writeSeedTrace(t, dir, "good.zst", seedNamed(t, "every-row"), false)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, ExitInterrupted}, {syscall.SIGTERM, ExitTerminated}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestKtstrChild$")
			cmd.Env = append(os.Environ(), "KTSTR_CHILD_ARGS="+strings.Join([]string{"replay", "--json", "--mutate", "100000000", good}, "\x1f"))
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Start())
			time.Sleep(3 * time.Second) // well into the campaign, on a loaded machine too
			require.NoError(t, cmd.Process.Signal(tc.sig))
			err := cmd.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, stderr.String())
			assert.Equal(t, tc.code, ee.ExitCode(), stderr.String())
			assertOneLineError(t, stderr.String())
			assert.Contains(t, stderr.String(), "results up to then are above")
			var rep struct {
				Mutation struct {
					Mutants     int  `json:"mutants"`
					Interrupted bool `json:"interrupted"`
				} `json:"mutation"`
			}
			require.NoError(t, json.Unmarshal([]byte(stdout.String()), &rep), stdout.String())
			assert.True(t, rep.Mutation.Interrupted)
			assert.Positive(t, rep.Mutation.Mutants)
			assert.Less(t, rep.Mutation.Mutants, 100000000)
		})
	}
	r := runChild(t, childOpts{}, "replay", "--mutate", "50", good)
	assert.Equal(t, ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "mutation campaign, 50 mutants")
	assert.NotContains(t, r.stdout, "interrupted")
}
