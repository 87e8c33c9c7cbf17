package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
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
	"github.com/ktstr/ktstr/replay"
)

// step is one scripted delivery, handed out after delay.
type step struct {
	b     []byte
	delay time.Duration
}

// fakeMachine plays a script of deliveries on its bulk port. After the
// script it either ends (a power-off) or, with hang, waits for Stop.
type fakeMachine struct {
	script      []step
	hang        bool
	exit        Exit   // how it ends by itself
	resumeFails int    // Resume fails this many times first
	onPause     func() // called by Pause, if set

	mu       sync.Mutex
	rx       bytes.Buffer
	pauses   int
	resumes  int
	regs     int
	stopped  bool
	stopCh   chan struct{}
	stopOnce sync.Once
	next     int
}

func newFake(hang bool, script ...step) *fakeMachine {
	return &fakeMachine{script: script, hang: hang, exit: Exit{Reason: ExitPoweroff}, stopCh: make(chan struct{})}
}

func (m *fakeMachine) Bulk() io.ReadWriter { return fakePort{m} }

type fakePort struct{ m *fakeMachine }

func (p fakePort) Read(b []byte) (int, error) {
	m := p.m
	m.mu.Lock()
	i := m.next
	m.next++
	m.mu.Unlock()
	if i < len(m.script) {
		select {
		case <-time.After(m.script[i].delay):
		case <-m.stopCh:
			return 0, io.EOF
		}
		return copy(b, m.script[i].b), nil
	}
	if m.hang {
		<-m.stopCh
	}
	return 0, io.EOF
}

func (p fakePort) Write(b []byte) (int, error) {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return p.m.rx.Write(b)
}

func (m *fakeMachine) Pause() error {
	m.mu.Lock()
	m.pauses++
	m.mu.Unlock()
	if m.onPause != nil {
		m.onPause()
	}
	return nil
}

// served is how many reads the port has answered.
func (m *fakeMachine) served() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next
}
func (m *fakeMachine) Resume() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resumes++
	if m.resumeFails > 0 {
		m.resumeFails--
		return errors.New("QMP cont: context deadline exceeded")
	}
	return nil
}
func (m *fakeMachine) Registers() (json.RawMessage, error) {
	m.mu.Lock()
	m.regs++
	m.mu.Unlock()
	return json.RawMessage(`{"cpus":[{"cpu":0,"regs":{"RIP":"ffffffff81000000"}}]}`), nil
}
func (m *fakeMachine) Stop() error {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.stopOnce.Do(func() { close(m.stopCh) })
	return nil
}
func (m *fakeMachine) Wait() (Exit, error) {
	if m.hang {
		<-m.stopCh
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return Exit{Reason: ExitStopped}, nil
	}
	return m.exit, nil
}
func (m *fakeMachine) Info() map[string]string { return map[string]string{"accel": "fake"} }

type fakeBackend struct {
	m   *fakeMachine
	err error
}

func (b *fakeBackend) Name() string { return "fake" }
func (b *fakeBackend) Start(ctx context.Context, cfg Config) (Machine, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.m, nil
}

func frame(tag wire.Tag, p []byte) []byte { return wire.AppendFrame(nil, tag, p) }

func i32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

func snrq(id, kind uint32, tag string) []byte {
	r := wire.NewSnapshotRequest(id, kind, tag)
	p, _ := r.AppendBinary(nil)
	return frame(wire.SnapshotRequest, p)
}

// record runs the coordinator over m and returns the result and trace.
func record(t *testing.T, ctx context.Context, m *fakeMachine, r Run) (Result, []byte) {
	t.Helper()
	var trace bytes.Buffer
	r.Backend = &fakeBackend{m: m}
	r.Trace = &trace
	r.Meta = capture.Meta{Scenario: "test"}
	res, err := r.Execute(ctx)
	require.NoError(t, err)
	return res, trace.Bytes()
}

// readTrace returns every record of a trace.
func readTrace(t *testing.T, b []byte) (capture.Meta, []capture.Record) {
	t.Helper()
	r, err := capture.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	var recs []capture.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		rec.Data = append([]byte(nil), rec.Data...)
		rec.Detail = append(json.RawMessage(nil), rec.Detail...)
		recs = append(recs, rec)
	}
	return r.Meta(), recs
}

// redispatch runs the recorded TX deliveries through a fresh Session
// with the recorded timestamps as the clock.
func redispatch(recs []capture.Record) dispatch.Outcome {
	s := dispatch.NewSession()
	for _, rec := range recs {
		if rec.Kind != capture.KindData || rec.Dir != capture.TX {
			continue
		}
		s.Feed(rec.TimeNS, rec.Data, nil)
	}
	return s.Finish()
}

func endOf(t *testing.T, recs []capture.Record) *capture.End {
	t.Helper()
	require.NotEmpty(t, recs)
	last := recs[len(recs)-1]
	require.Equal(t, capture.KindEnd, last.Kind, "the trace ends with END")
	return last.End
}

func events(recs []capture.Record) map[string][]json.RawMessage {
	ev := map[string][]json.RawMessage{}
	for _, r := range recs {
		if r.Kind == capture.KindEvent {
			ev[r.Name] = append(ev[r.Name], r.Detail)
		}
	}
	return ev
}

func TestRunPowerOff(t *testing.T) {
	payload := append(frame(wire.ScenarioStart, nil), frame(wire.TestResult, []byte(`{"pass":true}`))...)
	m := newFake(false,
		step{b: frame(wire.SysRdy, nil)},
		// A frame split across deliveries, and two frames in one.
		step{b: payload[:10]},
		step{b: payload[10:]},
		step{b: append(frame(wire.Exit, i32(0)), frame(wire.Stdout, []byte("hi"))...)},
	)
	res, tr := record(t, context.Background(), m, Run{Watchdog: time.Minute, Timeout: time.Minute})

	assert.Equal(t, EndPoweroff, res.Reason)
	assert.Equal(t, int32(0), res.ExitStatus)
	assert.GreaterOrEqual(t, res.SysRdyNS, int64(0))
	assert.Equal(t, int64(-1), res.SchedExitNS)
	assert.Equal(t, `{"pass":true}`, string(res.TestResult))
	require.NotNil(t, res.GuestExit)
	assert.Equal(t, int32(0), *res.GuestExit)
	assert.True(t, res.Outcome.SysRdy)
	assert.Len(t, res.Outcome.Verdicts, 4)

	meta, recs := readTrace(t, tr)
	assert.Equal(t, "fake", meta.Backend)
	assert.Equal(t, "fake", meta.Accel)
	assert.Equal(t, "test", meta.Scenario)
	var tx [][]byte
	for _, r := range recs {
		if r.Kind == capture.KindData {
			assert.Equal(t, capture.TX, r.Dir)
			assert.Equal(t, capture.BulkPort, r.Port)
			tx = append(tx, r.Data)
		}
	}
	want := make([][]byte, len(m.script))
	for i, s := range m.script {
		want[i] = s.b
	}
	assert.Equal(t, want, tx, "each delivery recorded exactly as read")

	end := endOf(t, recs)
	assert.Equal(t, EndPoweroff, end.Reason)
	live, err := json.Marshal(res.Outcome)
	require.NoError(t, err)
	assert.JSONEq(t, string(live), string(end.Outcome))
	again, err := json.Marshal(redispatch(recs))
	require.NoError(t, err)
	assert.JSONEq(t, string(end.Outcome), string(again), "replaying the recorded TX reproduces END")

	rep, err := replay.Trace(bytes.NewReader(tr), "fake", replay.Options{})
	require.NoError(t, err)
	assert.True(t, rep.OK(), "replay: match=%v diff=%v violations=%v", rep.Match, rep.Diff, rep.Violations)
}

func TestRunStopsOnSchedExit(t *testing.T) {
	m := newFake(true,
		step{b: frame(wire.SysRdy, nil)},
		// A torn SCDX first: it must not stop anything.
		step{b: func() []byte { f := frame(wire.SchedExit, i32(7)); f[len(f)-1] ^= 1; return f }()},
		step{b: frame(wire.Stdout, []byte("still running")), delay: 20 * time.Millisecond},
		step{b: frame(wire.SchedExit, i32(7)), delay: 20 * time.Millisecond},
	)
	res, tr := record(t, context.Background(), m, Run{Timeout: time.Minute})
	assert.Equal(t, EndSchedExit, res.Reason)
	assert.Contains(t, res.Detail, "status 7")
	assert.Equal(t, int32(0), res.ExitStatus, "stopping on SCDX is the expected ending")
	assert.True(t, m.stopped)
	assert.Equal(t, ExitStopped, res.Exit.Reason)
	require.GreaterOrEqual(t, res.SchedExitNS, int64(0))
	assert.GreaterOrEqual(t, res.GoneNS, res.SchedExitNS)
	assert.Equal(t, uint64(1), res.Outcome.KillSignals)
	assert.Equal(t, uint64(1), res.Outcome.Rejected.CRC)

	_, recs := readTrace(t, tr)
	assert.Equal(t, EndSchedExit, endOf(t, recs).Reason)
	assert.Len(t, events(recs)["sched_exit"], 1)
}

func TestRunAnswersSnapshots(t *testing.T) {
	m := newFake(false,
		step{b: frame(wire.SysRdy, nil)},
		step{b: snrq(1, wire.SnapshotCapture, "cap")},
		step{b: snrq(2, wire.SnapshotWatch, "watch")},
		step{b: func() []byte { f := snrq(3, wire.SnapshotCapture, "torn"); f[20] ^= 1; return f }()},
	)
	res, tr := record(t, context.Background(), m, Run{Timeout: time.Minute})
	assert.Equal(t, EndPoweroff, res.Reason)
	assert.Equal(t, 2, res.Snapshots)
	assert.Equal(t, 1, m.pauses, "only the capture freezes the guest; the torn request does nothing")
	assert.Equal(t, 1, m.resumes)
	assert.Equal(t, 1, m.regs)

	// The guest got one SNRP per accepted request, in order.
	a := dispatch.NewAssembler()
	a.Feed(m.rx.Bytes())
	var got []wire.SnapshotReplyPayload
	for {
		msg, ok := a.Next()
		if !ok {
			break
		}
		require.True(t, msg.Intact())
		require.Equal(t, wire.SnapshotReply, msg.Tag)
		r, err := wire.DecodeSnapshotReply(msg.Payload)
		require.NoError(t, err)
		got = append(got, r)
	}
	require.Len(t, got, 2)
	assert.Equal(t, uint32(1), got[0].RequestID)
	assert.Equal(t, wire.SnapshotOK, got[0].Status)
	assert.Equal(t, uint32(2), got[1].RequestID)
	assert.Equal(t, wire.SnapshotError, got[1].Status)
	assert.Contains(t, got[1].ReasonString(), "watchpoints")

	_, recs := readTrace(t, tr)
	var rx []byte
	for _, r := range recs {
		if r.Kind == capture.KindData && r.Dir == capture.RX {
			rx = append(rx, r.Data...)
		}
	}
	assert.Equal(t, m.rx.Bytes(), rx, "every byte sent to the guest is recorded as RX")
	snaps := events(recs)["snapshot"]
	require.Len(t, snaps, 2)
	assert.Contains(t, string(snaps[0]), `"RIP":"ffffffff81000000"`)
	again, err := json.Marshal(redispatch(recs))
	require.NoError(t, err)
	assert.JSONEq(t, string(endOf(t, recs).Outcome), string(again))
}

func TestRunWatchdog(t *testing.T) {
	t.Run("fires without SCST", func(t *testing.T) {
		m := newFake(true, step{b: frame(wire.SysRdy, nil)})
		res, _ := record(t, context.Background(), m, Run{Watchdog: 100 * time.Millisecond, Timeout: time.Minute})
		assert.Equal(t, EndWatchdog, res.Reason)
		assert.Equal(t, int32(1), res.ExitStatus)
		assert.True(t, m.stopped)
	})
	t.Run("re-armed by SCST", func(t *testing.T) {
		var script []step
		for i := 0; i < 8; i++ {
			script = append(script, step{b: frame(wire.ScenarioStart, nil), delay: 50 * time.Millisecond})
		}
		m := newFake(false, script...)
		res, _ := record(t, context.Background(), m, Run{Watchdog: 300 * time.Millisecond, Timeout: time.Minute})
		assert.Equal(t, EndPoweroff, res.Reason, "400 ms of SCST every 50 ms outlives a 300 ms watchdog")
	})
	t.Run("paused by SCPP", func(t *testing.T) {
		m := newFake(false,
			step{b: frame(wire.WatchdogPause, nil)},
			step{b: frame(wire.WatchdogResume, nil), delay: 400 * time.Millisecond},
		)
		res, _ := record(t, context.Background(), m, Run{Watchdog: 200 * time.Millisecond, Timeout: time.Minute})
		assert.Equal(t, EndPoweroff, res.Reason)
		assert.Equal(t, uint64(1), res.Outcome.WatchdogPauses)
		assert.Greater(t, res.Outcome.WatchdogPauseNS, int64(300*time.Millisecond))
	})
	t.Run("paused for ever: the timeout still ends the run", func(t *testing.T) {
		m := newFake(true, step{b: frame(wire.SysRdy, nil)}, step{b: frame(wire.WatchdogPause, nil)})
		start := time.Now()
		res, _ := record(t, context.Background(), m, Run{Watchdog: 50 * time.Millisecond, Timeout: 400 * time.Millisecond})
		assert.Equal(t, EndTimeout, res.Reason, "the paused watchdog never fires; the timeout does")
		assert.Less(t, time.Since(start), 2*time.Second)
		assert.True(t, m.stopped)
	})
}

func TestRunTimeoutAndSignal(t *testing.T) {
	m := newFake(true, step{b: frame(wire.SysRdy, nil)})
	res, tr := record(t, context.Background(), m, Run{Timeout: 100 * time.Millisecond})
	assert.Equal(t, EndTimeout, res.Reason)
	assert.Equal(t, int32(1), res.ExitStatus)
	_, recs := readTrace(t, tr)
	assert.Equal(t, EndTimeout, endOf(t, recs).Reason)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	m = newFake(true)
	res, _ = record(t, ctx, m, Run{})
	assert.Equal(t, EndSignal, res.Reason)
	assert.Equal(t, int64(-1), res.SysRdyNS)
}

func TestRunGuestDied(t *testing.T) {
	m := newFake(false, step{b: frame(wire.SysRdy, nil)})
	m.exit = Exit{Reason: ExitReset}
	res, _ := record(t, context.Background(), m, Run{})
	assert.Equal(t, EndGuestDied, res.Reason)
	assert.Contains(t, res.Detail, "reset")
	assert.Equal(t, int32(1), res.ExitStatus)
}

func TestRunStartError(t *testing.T) {
	r := Run{Backend: &fakeBackend{err: &EnvError{Missing: "qemu", Fix: "apt-get install qemu"}}, Trace: io.Discard}
	_, err := r.Execute(context.Background())
	var ee *EnvError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "qemu is missing; run: apt-get install qemu", err.Error())
}

func TestLiveWatchdog(t *testing.T) {
	w := liveWatchdog{period: 100, deadline: 100, armed: true}
	d, ok := w.due(30)
	require.True(t, ok)
	assert.Equal(t, time.Duration(70), d)
	w.rearm(50)
	d, _ = w.due(50)
	assert.Equal(t, time.Duration(100), d)
	w.pause(80) // 70 left
	_, ok = w.due(1000)
	assert.False(t, ok, "paused: never due")
	w.rearm(90) // still paused, full period left
	w.resume(500)
	d, _ = w.due(500)
	assert.Equal(t, time.Duration(100), d)
	w.extend(25)
	d, _ = w.due(500)
	assert.Equal(t, time.Duration(125), d)
	d, _ = w.due(700)
	assert.Equal(t, time.Duration(-75), d, "overdue")

	off := liveWatchdog{}
	off.rearm(1)
	off.pause(1)
	off.resume(2)
	_, ok = off.due(1 << 40)
	assert.False(t, ok, "a disabled watchdog is never due")
}

// TestRunRetriesResume: a resume that fails once (a monitor command timed
// out on a loaded host) is retried and the run goes on; one that keeps
// failing stops the run at once with the reason, instead of leaving the
// guest frozen until the watchdog.
func TestRunRetriesResume(t *testing.T) {
	for _, tc := range []struct {
		fails      int
		reason     string
		status     uint32
		minResumes int
	}{
		{0, EndPoweroff, wire.SnapshotOK, 1},
		{1, EndPoweroff, wire.SnapshotOK, 2},
		{resumeTries, EndGuestDied, wire.SnapshotError, resumeTries},
	} {
		m := newFake(false,
			step{b: frame(wire.SysRdy, nil)},
			step{b: snrq(1, wire.SnapshotCapture, "cap")},
		)
		m.resumeFails = tc.fails
		res, _ := record(t, context.Background(), m, Run{Timeout: time.Minute, Watchdog: time.Minute})
		assert.Equal(t, tc.reason, res.Reason, "%d failures: %s", tc.fails, res.Detail)
		assert.GreaterOrEqual(t, m.resumes, tc.minResumes)
		a := dispatch.NewAssembler()
		a.Feed(m.rx.Bytes())
		msg, ok := a.Next()
		require.True(t, ok, "the guest got an SNRP")
		r, err := wire.DecodeSnapshotReply(msg.Payload)
		require.NoError(t, err)
		assert.Equal(t, tc.status, r.Status, "%d failures", tc.fails)
		if tc.reason == EndGuestDied {
			assert.Contains(t, res.Detail, "could not be resumed")
		}
	}
}

// TestReaderKeepsUpWhileLoopIsBusy: while the loop is held up by a
// snapshot capture, the reader goes on reading a flood of small
// deliveries, far more than there are read buffers. A reader that
// stopped would let the socket fill and QEMU throttle the port, and a
// guest powering off then loses what it last wrote.
func TestReaderKeepsUpWhileLoopIsBusy(t *testing.T) {
	const flood = 20 * readBuffers
	script := []step{{b: frame(wire.SysRdy, nil)}, {b: snrq(1, wire.SnapshotCapture, "busy")}}
	for i := range flood {
		script = append(script, step{b: frame(wire.Stdout, []byte{byte(i)})})
	}
	script = append(script, step{b: frame(wire.Exit, i32(0))})
	m := newFake(false, script...)
	caughtUp := false
	m.onPause = func() {
		// Hold the loop until the reader has read the whole script, or
		// give up: a reader limited to one delivery per buffer stops
		// after readBuffers deliveries.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if m.served() > len(script) {
				caughtUp = true
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	res, tr := record(t, context.Background(), m, Run{Watchdog: time.Minute, Timeout: time.Minute})
	assert.True(t, caughtUp, "the reader read every delivery while the loop was busy")
	assert.Equal(t, EndPoweroff, res.Reason)
	require.NotNil(t, res.GuestExit, "the last frame arrived")
	assert.Equal(t, int64(len(script)), res.Stats.Frames)
	_, recs := readTrace(t, tr)
	var data int
	for _, r := range recs {
		if r.Kind == capture.KindData && r.Dir == capture.TX {
			data++
		}
	}
	assert.Equal(t, len(script), data, "one DATA record per read, none merged or lost")
	assert.Equal(t, res.Outcome, redispatch(recs))
}

// TestRunStopsAtTraceBudget: a guest that would write past MaxTrace is
// stopped with EndTraceFull; the trace holds exactly the budget's bytes,
// and replaying them gives the END outcome. A budget the run stays
// inside (the control) changes nothing.
func TestRunStopsAtTraceBudget(t *testing.T) {
	stim := frame(wire.Stimulus, nil)
	chunk := bytes.Repeat(stim, 64) // 1 KiB a delivery
	script := func() []step {
		s := []step{{b: frame(wire.SysRdy, nil)}}
		for range 100 {
			s = append(s, step{b: chunk})
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		budget int64
		reason string
	}{
		{"past the budget", 10*1024 + 16 + 5, EndTraceFull},
		{"inside the budget", 1 << 20, EndPoweroff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(true, script()...)
			if tc.reason == EndPoweroff {
				m.hang = false
			}
			res, tr := record(t, context.Background(), m, Run{Timeout: time.Minute, MaxTrace: tc.budget})
			assert.Equal(t, tc.reason, res.Reason, res.Detail)
			_, recs := readTrace(t, tr)
			tx := txBytes(recs)
			assert.Equal(t, tc.reason, endOf(t, recs).Reason)
			got := redispatch(recs)
			assert.True(t, got.Equal(&res.Outcome), "replay of the recorded bytes: %v", got.Diff(&res.Outcome))
			if tc.reason == EndTraceFull {
				assert.Equal(t, tc.budget, tx, "the trace holds the budget exactly")
				assert.Contains(t, res.Detail, "--max-trace")
				assert.NotZero(t, res.ExitStatus, "a run cut short by its budget is not a success")
				assert.EqualValues(t, 5, res.Outcome.Rejected.TruncatedTailBytes, "the cut frame is the tail")
			} else {
				assert.EqualValues(t, 16+100*1024, tx)
			}
		})
	}
}

// TestRunWithoutSysRdyFails (invariant 11): a guest that powers off
// without an accepted SYS_RDY ends with a non-zero status and says why;
// a torn SRDY does not count. The same run with an intact SRDY is the
// control.
func TestRunWithoutSysRdyFails(t *testing.T) {
	torn := frame(wire.SysRdy, nil)
	torn[12] = 1 // pad ≠ 0
	for _, tc := range []struct {
		name   string
		first  []byte
		status int32
	}{
		{"no SRDY", frame(wire.Stdout, []byte("booting")), 1},
		{"torn SRDY", torn, 1},
		{"intact SRDY", frame(wire.SysRdy, nil), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(false, step{b: tc.first}, step{b: frame(wire.Exit, i32(0))})
			res, _ := record(t, context.Background(), m, Run{Timeout: time.Minute})
			assert.Equal(t, EndPoweroff, res.Reason)
			assert.Equal(t, tc.status, res.ExitStatus)
			if tc.status != 0 {
				assert.Contains(t, res.Detail, "SYS_RDY")
			}
		})
	}
}

// TestRunFollowsTheScenarioVerdict: a run exits 0 only when the agent
// says its scenario did what it expects: a TEST with "pass": false, or
// an EXIT with a non-zero status, fails the run; a passing TEST and
// EXIT 0 is the control.
func TestRunFollowsTheScenarioVerdict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		test   string
		exit   int32
		status int32
	}{
		{"pass", `{"pass":true}`, 0, 0},
		{"no verdict in TEST", `{"scenario":"x"}`, 0, 0},
		{"TEST fails", `{"pass":false}`, 0, 1},
		{"EXIT fails", `{"pass":true}`, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(false, step{b: frame(wire.SysRdy, nil)}, step{b: frame(wire.TestResult, []byte(tc.test))}, step{b: frame(wire.Exit, i32(tc.exit))})
			res, _ := record(t, context.Background(), m, Run{Timeout: time.Minute})
			assert.Equal(t, EndPoweroff, res.Reason)
			assert.Equal(t, tc.status, res.ExitStatus, res.Detail)
		})
	}
}

// TestConsoleWhy reads why a guest never sent SYS_RDY from its console.
func TestConsoleWhy(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, log, reason, why string
	}{
		{"no bulk port", "[1.0] boot\r\nktstr-init: loaded 0 modules\n" + wire.NoBulkPortMarker + " no driver; powering off\n", EndNoBulkPort, wire.NoBulkPortMarker + " no driver; powering off"},
		{"panic", "[0.5] Kernel panic - not syncing: VFS: Unable to mount root\nmore\n", "", "[0.5] Kernel panic - not syncing: VFS: Unable to mount root"},
		{"agent's last words", "ktstr-init: mount cgroup2: no such device\n", "", "ktstr-init: mount cgroup2: no such device"},
		{"nothing", "[0.1] Linux version 6.1\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			require.NoError(t, os.WriteFile(p, []byte(tc.log), 0o644))
			reason, why := consoleWhy(p)
			assert.Equal(t, tc.reason, reason)
			assert.Equal(t, tc.why, why)
		})
	}
	r, w := consoleWhy(filepath.Join(dir, "absent"))
	assert.Empty(t, r+w)
}

// TestRunExpectsItsScenario: ExpectPass fails a run with no passing
// TEST; MinStep fails a run whose SCDX came before that step (a
// scheduler dead before its ejection). The runs that meet both are the
// controls.
func TestRunExpectsItsScenario(t *testing.T) {
	stepFrame := func(n uint16) []byte { return frame(wire.Step, []byte{byte(n), byte(n >> 8)}) }
	for _, tc := range []struct {
		name   string
		run    Run
		script []step
		status int32
	}{
		{"TEST passes", Run{ExpectPass: true}, []step{{b: frame(wire.TestResult, []byte(`{"pass":true}`))}}, 0},
		{"no TEST", Run{ExpectPass: true}, nil, 1},
		{"SCDX at the ejection", Run{MinStep: 3}, []step{{b: stepFrame(3)}, {b: frame(wire.SchedExit, i32(0))}}, 0},
		{"SCDX before the ejection", Run{MinStep: 3}, []step{{b: stepFrame(1)}, {b: frame(wire.SchedExit, i32(0))}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := append([]step{{b: frame(wire.SysRdy, nil)}}, tc.script...)
			m := newFake(true, script...)
			if tc.run.MinStep == 0 {
				m.hang = false
			}
			tc.run.Timeout = time.Minute
			res, _ := record(t, context.Background(), m, tc.run)
			assert.Equal(t, tc.status, res.ExitStatus, res.Detail)
		})
	}
}

// snapshotFlood is SYS_RDY then n capture requests in one delivery, as a
// guest writes them in one burst.
func snapshotFlood(n int) []byte {
	b := frame(wire.SysRdy, nil)
	for i := range n {
		b = append(b, snrq(uint32(i+1), wire.SnapshotCapture, "flood")...)
	}
	return b
}

// replies decodes the SNRP frames the guest received.
func replies(t *testing.T, rx []byte) []wire.SnapshotReplyPayload {
	t.Helper()
	a := dispatch.NewAssembler()
	a.Feed(rx)
	var out []wire.SnapshotReplyPayload
	for {
		msg, ok := a.Next()
		if !ok {
			return out
		}
		require.Equal(t, wire.SnapshotReply, msg.Tag)
		r, err := wire.DecodeSnapshotReply(msg.Payload)
		require.NoError(t, err)
		out = append(out, r)
	}
}

// TestRunSnapshotFloodIsBoundedInTime: every capture costs a pause, a
// register dump and a resume, each a monitor round trip that a loaded
// host can make slow. A guest that sends the 64 captures a run accepts
// must not hold the dispatch loop past the run's timeout or a signal,
// nor make the captures together take longer than Run.SnapshotBudget:
// the captures past the budget are answered with an error and do not
// pause the guest. A flood of fast captures (the control) is answered
// in full.
func TestRunSnapshotFloodIsBoundedInTime(t *testing.T) {
	const slow = 100 * time.Millisecond // one capture on a loaded host; 64 take 6.4 s
	n := dispatch.MaxSnapshotRequests
	for _, tc := range []struct {
		name     string
		pause    time.Duration
		run      Run
		signalAt time.Duration
		reason   string
		maxWall  time.Duration
		minOK    int
		maxOK    int
	}{
		{"fast captures (control)", 0, Run{Timeout: time.Minute}, 0, EndPoweroff, 5 * time.Second, n, n},
		{"slow captures, run timeout", slow, Run{Timeout: 400 * time.Millisecond}, 0, EndTimeout, 2 * time.Second, 1, 8},
		{"slow captures, signal", slow, Run{Timeout: time.Minute}, 400 * time.Millisecond, EndSignal, 2 * time.Second, 1, 8},
		{"slow captures, snapshot budget", slow, Run{Timeout: time.Minute, SnapshotBudget: 450 * time.Millisecond}, 0, EndPoweroff, 2 * time.Second, 4, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(false, step{b: snapshotFlood(n)})
			if tc.pause > 0 {
				m.onPause = func() { time.Sleep(tc.pause) }
			}
			ctx := context.Background()
			if tc.signalAt > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				time.AfterFunc(tc.signalAt, cancel)
			}
			start := time.Now()
			res, _ := record(t, ctx, m, tc.run)
			wall := time.Since(start)
			assert.Equal(t, tc.reason, res.Reason, res.Detail)
			assert.Less(t, wall, tc.maxWall, "the run ended in time")
			got := replies(t, m.rx.Bytes())
			require.Len(t, got, n, "every accepted request gets an SNRP")
			ok := 0
			for _, r := range got {
				if r.Status == wire.SnapshotOK {
					ok++
				}
			}
			assert.GreaterOrEqual(t, ok, tc.minOK)
			assert.LessOrEqual(t, ok, tc.maxOK)
			assert.Equal(t, ok, m.pauses, "only the captures answered ok paused the guest")
			if tc.name == "slow captures, snapshot budget" {
				assert.Contains(t, got[n-1].ReasonString(), "snapshot time budget")
			}
		})
	}
}

// TestRunBoundsTheTraceFileOfTinyDeliveries: every delivery is a DATA
// record with a 16-byte head, so a guest writing one byte at a time
// makes a trace file several times larger than the TX bytes MaxTrace
// counts. The run stops with EndTraceFull once the file reaches
// MaxTrace, having written at most one more zstd frame; the same
// deliveries under a budget the file stays inside (the control) run to
// the end.
func TestRunBoundsTheTraceFileOfTinyDeliveries(t *testing.T) {
	const deliveries = 400_000 // under 512 KiB of TX bytes
	stim := frame(wire.Stimulus, nil)
	script := []step{{b: frame(wire.SysRdy, nil)}}
	for i := range deliveries {
		script = append(script, step{b: stim[i%len(stim) : i%len(stim)+1]})
	}
	for _, tc := range []struct {
		name   string
		budget int64
		reason string
	}{
		{"file past the budget", 512 << 10, EndTraceFull},
		{"file inside the budget (control)", 64 << 20, EndPoweroff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(tc.reason == EndTraceFull, script...)
			res, tr := record(t, context.Background(), m, Run{Timeout: time.Minute, MaxTrace: tc.budget})
			assert.Equal(t, tc.reason, res.Reason, res.Detail)
			_, recs := readTrace(t, tr)
			tx := txBytes(recs)
			t.Logf("%d TX bytes recorded in a trace of %d bytes", tx, len(tr))
			got := redispatch(recs)
			assert.True(t, got.Equal(&res.Outcome), "replay of the recorded bytes: %v", got.Diff(&res.Outcome))
			if tc.reason == EndTraceFull {
				assert.Less(t, tx, tc.budget, "the TX bytes alone never reached the budget")
				// At most one more frame is written past the budget; the
				// streaming encoder writes its blocks as they fill, so in
				// practice far less (8 KiB measured).
				assert.LessOrEqual(t, int64(len(tr)), tc.budget+capture.FrameSize/8, "the trace file stops at the budget")
				assert.Contains(t, res.Detail, "trace file reached the budget")
				assert.NotZero(t, res.ExitStatus)
			} else {
				assert.EqualValues(t, 16+deliveries, tx)
				assert.Greater(t, int64(len(tr)), tx, "the file outgrows the TX bytes it records")
			}
		})
	}
}

// TestRunTraceBudgetSaysWhichBound: a guest writing large deliveries of
// bytes that do not compress fills the TX budget and the trace file's at
// once (the file is as large as the bytes it holds, plus record heads);
// the run's detail says the guest wrote past the trace budget, not that
// its deliveries were small (they were 64 KiB each). The control is
// the tiny deliveries the file budget is for, whose detail says the
// file reached the budget. Either way replay reproduces the outcome.
func TestRunTraceBudgetSaysWhichBound(t *testing.T) {
	// 256 KiB: the one-byte control fills it in about 65,000 deliveries
	// (4 trace bytes per TX byte); at 1 MiB its 400,000 did not finish
	// within the run's minute on a loaded 2-core CI machine.
	const budget = 256 << 10
	big := []step{{b: frame(wire.SysRdy, nil)}}
	var x uint64 = 0x9E3779B97F4A7C15
	for range 2 * budget / (64 << 10) {
		b := make([]byte, 64<<10)
		for i := range b { // xorshift: bytes zstd cannot compress
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			b[i] = byte(x)
		}
		big = append(big, step{b: b})
	}
	stim := frame(wire.Stimulus, nil)
	tiny := []step{{b: frame(wire.SysRdy, nil)}}
	for i := range 4 * budget / 3 {
		tiny = append(tiny, step{b: stim[i%len(stim) : i%len(stim)+1]})
	}
	for _, tc := range []struct {
		name, want, not string
		script          []step
	}{
		{"64 KiB deliveries that do not compress", "the guest wrote past the trace budget", "small deliveries", big},
		{"one-byte deliveries (control)", "the trace file reached the budget", "the guest wrote past", tiny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(true, tc.script...)
			res, tr := record(t, context.Background(), m, Run{Timeout: time.Minute, MaxTrace: budget})
			assert.Equal(t, EndTraceFull, res.Reason, res.Detail)
			assert.Contains(t, res.Detail, tc.want)
			assert.NotContains(t, res.Detail, tc.not)
			assert.NotContains(t, res.Detail, "\n", "one line")
			_, recs := readTrace(t, tr)
			got := redispatch(recs)
			assert.True(t, got.Equal(&res.Outcome), "replay of the recorded bytes: %v", got.Diff(&res.Outcome))
		})
	}
}

// txBytes sums the TX bytes of a trace's DATA records.
func txBytes(recs []capture.Record) int64 {
	var tx int64
	for _, r := range recs {
		if r.Kind == capture.KindData && r.Dir == capture.TX {
			tx += int64(len(r.Data))
		}
	}
	return tx
}
