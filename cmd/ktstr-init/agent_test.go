package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// syncBuffer is a port stand-in safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// messages frames a stream with the real Assembler.
type frameSeen struct {
	tag     wire.Tag
	payload string
	intact  bool
}

func frames(t *testing.T, stream []byte) []frameSeen {
	t.Helper()
	a := dispatch.NewAssembler()
	a.Feed(stream)
	var out []frameSeen
	for {
		m, ok := a.Next()
		if !ok {
			break
		}
		out = append(out, frameSeen{m.Tag, string(m.Payload), m.Intact()})
	}
	st := a.Finish()
	require.Zero(t, st.TruncatedTailBytes, "stream ends on a frame boundary")
	return out
}

// dispatchAll runs a stream through a Session, as the host does.
func dispatchAll(stream []byte) dispatch.Outcome {
	s := dispatch.NewSession()
	s.Feed(0, stream, nil)
	return s.Finish()
}

func TestParseCmdline(t *testing.T) {
	c, err := parseCmdline("console=ttyS0 quiet ktstr.scenario=hostile ktstr.duration=1500ms ktstr.workers=3 ktstr.scheduler=/bin/scx panic=-1")
	require.NoError(t, err)
	assert.Equal(t, config{Scenario: "hostile", Duration: 1500 * time.Millisecond, Workers: 3, Scheduler: "/bin/scx"}, c)

	c, err = parseCmdline("console=ttyS0 quiet")
	require.NoError(t, err)
	assert.Equal(t, defaultConfig(), c, "defaults without ktstr options")

	for _, bad := range []string{
		"ktstr.scenario=", "ktstr.duration=2", "ktstr.duration=-1s", "ktstr.duration=2h",
		"ktstr.workers=0", "ktstr.workers=x", "ktstr.workers=100000",
		"ktstr.scheduler=relative", "ktstr.bogus=1",
	} {
		_, err := parseCmdline("quiet " + bad)
		assert.Error(t, err, bad)
	}
}

func TestRegistry(t *testing.T) {
	r, err := newRegistry(builtinScenarios())
	require.NoError(t, err)
	assert.Equal(t, []string{"console-flood", "crash", "flood", "flood-mixed", "hostile", "sched-exit", "sched-ext", "snapshot", "stall", "steady", "throughput"}, r.names())
	s, ok := r.lookup("steady")
	require.True(t, ok)
	assert.Equal(t, "steady", s.name)
	_, ok = r.lookup("nope")
	assert.False(t, ok)

	_, err = newRegistry([]scenario{steadyScenario(), steadyScenario()})
	assert.ErrorContains(t, err, "twice")
}

func TestRunSendsSRDYFirstAndReportsProblems(t *testing.T) {
	ok := scenario{name: "ok", run: func(ctx context.Context, a *agent) (int, error) {
		return 0, a.sendJSON(wire.TestResult, map[string]bool{"pass": true})
	}}
	boom := scenario{name: "boom", run: func(ctx context.Context, a *agent) (int, error) { panic("boom") }}
	goBoom := scenario{name: "goboom", run: func(ctx context.Context, a *agent) (int, error) {
		a.goSafe(func() { panic("in a goroutine") })
		// Wait for the report itself: a deferred close in the goroutine
		// would run before goSafe's recover has sent CRSH.
		select {
		case <-a.crashed:
		case <-time.After(10 * time.Second):
		}
		return 0, nil
	}}
	failing := scenario{name: "failing", run: func(ctx context.Context, a *agent) (int, error) { return 0, errors.New("broke") }}
	reg, err := newRegistry([]scenario{ok, boom, goBoom, failing})
	require.NoError(t, err)

	tests := []struct {
		name     string
		scenario string
		cfgErr   error
		code     int
		want     wire.Tag // a frame that must appear
		contains string   // in that frame's payload
	}{
		{"positive control", "ok", nil, 0, wire.TestResult, `"pass":true`},
		{"unknown scenario", "nope", nil, exitUsage, wire.Stderr, `unknown scenario "nope"`},
		{"bad cmdline", "ok", errors.New("ktstr.workers=0: bad"), exitUsage, wire.Stderr, "ktstr.workers=0"},
		{"panic", "boom", nil, exitCrash, wire.Crash, "panic: boom"},
		{"panic in goroutine", "goboom", nil, exitCrash, wire.Crash, "panic: in a goroutine"},
		{"error", "failing", nil, 1, wire.Stderr, "scenario failing: broke"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var port syncBuffer
			cfg := defaultConfig()
			cfg.Scenario = tt.scenario
			a := newAgent(cfg, &port, io.Discard)
			assert.Equal(t, tt.code, a.run(reg, tt.cfgErr))
			fs := frames(t, port.Bytes())
			require.NotEmpty(t, fs)
			assert.Equal(t, frameSeen{wire.SysRdy, "", true}, fs[0], "SRDY comes first")
			found := false
			for _, f := range fs {
				assert.True(t, f.intact)
				if f.tag == tt.want && strings.Contains(f.payload, tt.contains) {
					found = true
				}
			}
			assert.True(t, found, "no %v frame containing %q in %v", tt.want, tt.contains, fs)
		})
	}
}

func TestHostileSequenceProvokesWhatItClaims(t *testing.T) {
	addrs := wire.NewKernelAddrs(0x2000000, 0, 0xffffffff9a000000)
	seq, prov := hostileSequence(addrs)
	stream := wire.AppendFrame(nil, wire.SysRdy, nil) // sent by the runner before any scenario
	for _, w := range seq {
		stream = append(stream, w.b...)
	}
	// A closing intact frame proves the stream is back in sync.
	stream = wire.AppendFrame(stream, wire.TestResult, []byte(`{"end":1}`))
	s := dispatchAll(stream)
	o := s
	r := o.Rejected

	assert.Equal(t, provoked{CRC: 3, Pad: 2, UnknownTag: 2, ForgedTag: 2, Shape: 7, OneshotRepeat: 2,
		Overflow: 6, OutOfOrder: 2, Oversize: 1, ResyncBytes: 16}, prov, "the claim")
	assert.Equal(t, provoked{CRC: r.CRC, Pad: r.Pad, UnknownTag: r.UnknownTag, ForgedTag: r.ForgedTag, Shape: r.Shape,
		OneshotRepeat: r.OneshotRepeat, Overflow: r.Overflow, OutOfOrder: r.OutOfOrder,
		Oversize: r.Oversize, ResyncBytes: r.ResyncBytes}, prov, "what dispatch counted")
	assert.Zero(t, r.TruncatedTailBytes)

	// Nothing promoted: no kill, the legitimate KADR only, the flood
	// capped at 64 and none of the torn requests.
	assert.False(t, o.Killed)
	assert.Zero(t, o.KillSignals)
	require.NotNil(t, o.KASLR)
	assert.Equal(t, dispatch.KASLR{PhysBase: 0x2000000, PageOffsetBase: 0, TextAddr: 0xffffffff9a000000}, *o.KASLR)
	require.Len(t, o.SnapshotRequests, dispatch.MaxSnapshotRequests)
	assert.Equal(t, uint32(100), o.SnapshotRequests[0].ID)
	assert.Equal(t, uint64(1), o.WatchdogPauses)
	var tags []string
	for _, v := range o.Verdicts {
		tags = append(tags, v.Tag.String())
	}
	assert.Equal(t, []string{"STIM", "TEST"}, tags, "only the intact STIM after the oversize header and the closing TEST")
}

func TestRacingUnitsStayAligned(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 200; trial++ {
		// Interleave the two threads' writes at random, keeping each
		// thread's own order.
		next := [racingThreads]int{}
		var stream []byte
		n := 1 + rng.Intn(20)
		for next[0] < 2*n || next[1] < 2*n {
			th := rng.Intn(racingThreads)
			if next[th] == 2*n {
				th = 1 - th
			}
			h, p := racingUnits(th, next[th]/2)
			if next[th]%2 == 0 {
				stream = append(stream, h...)
			} else {
				stream = append(stream, p...)
			}
			next[th]++
		}
		stream = wire.AppendFrame(stream, wire.TestResult, []byte("end"))
		s := dispatchAll(stream)
		o := s
		require.NotEmpty(t, o.Verdicts)
		last := o.Verdicts[len(o.Verdicts)-1]
		require.Equal(t, wire.TestResult, last.Tag, "trial %d: the frame after the race is framed intact", trial)
		intact := uint64(len(o.Verdicts) - 1)
		assert.Equal(t, uint64(2*n), intact+o.Rejected.CRC, "trial %d: every frame slot is intact or one crc reject", trial)
		assert.Zero(t, o.Rejected.Oversize+o.Rejected.ResyncBytes)
		assert.False(t, o.Killed)
	}
	// Positive control: without interleaving every racing frame is intact.
	var stream []byte
	for i := 0; i < 5; i++ {
		h, p := racingUnits(0, i)
		stream = append(append(stream, h...), p...)
	}
	assert.Len(t, dispatchAll(stream).Verdicts, 5)
}

func TestRaceWritesEveryUnit(t *testing.T) {
	var port syncBuffer
	a := newAgent(defaultConfig(), &port, io.Discard)
	require.NoError(t, race(a, func(b []byte) error { _, err := port.Write(b); return err }))
	assert.Len(t, port.Bytes(), racingThreads*racingFrames*2*wire.HeaderSize)
}

func TestFrameWriterSplits(t *testing.T) {
	var port syncBuffer
	a := newAgent(defaultConfig(), &port, io.Discard)
	big := bytes.Repeat([]byte("0123456789"), 20000) // 200 000 bytes
	n, err := frameWriter{a, wire.Stdout}.Write(big)
	require.NoError(t, err)
	assert.Equal(t, len(big), n)
	var joined []byte
	for _, f := range frames(t, port.Bytes()) {
		assert.Equal(t, wire.Stdout, f.tag)
		assert.LessOrEqual(t, len(f.payload), maxOutputFrame)
		joined = append(joined, f.payload...)
	}
	assert.Equal(t, big, joined)
}

func TestReadReplies(t *testing.T) {
	good := wire.NewSnapshotReply(7, wire.SnapshotOK, "done")
	gb, _ := good.AppendBinary(nil)
	other := wire.NewSnapshotReply(8, wire.SnapshotError, "x")
	ob, _ := other.AppendBinary(nil)
	var rx []byte
	rx = append(rx, frame(wire.SnapshotReply, ob, wire.Checksum(ob)^1, 0)...) // torn: dropped
	rx = wire.AppendFrame(rx, wire.Stdout, []byte("not a reply"))             // wrong tag: dropped
	rx = wire.AppendFrame(rx, wire.SnapshotReply, gb[:100])                   // wrong shape: dropped
	rx = wire.AppendFrame(rx, wire.SnapshotReply, gb)                         // the good one
	a := newAgent(defaultConfig(), io.Discard, io.Discard)
	a.readReplies(bytes.NewReader(rx))
	require.Len(t, a.replies, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := a.waitReply(ctx, 7)
	require.NoError(t, err)
	assert.Equal(t, "done", r.ReasonString())

	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	_, err = a.waitReply(ctx2, 9)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestLookupPort(t *testing.T) {
	dir := t.TempDir()
	for dev, name := range map[string]string{"vport0p0": "", "vport0p1": "ktstr-bulk\n", "vport0p2": "ktstr-stats\n"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, dev), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, dev, "name"), []byte(name), 0o644))
	}
	dev, ok := lookupPort(dir, "ktstr-bulk")
	require.True(t, ok)
	assert.Equal(t, "vport0p1", dev)
	_, ok = lookupPort(dir, "absent")
	assert.False(t, ok)
}

func TestParseUsageAndSpread(t *testing.T) {
	ns, err := parseUsage("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
	require.NoError(t, err)
	assert.Equal(t, int64(1500000), ns)
	_, err = parseUsage("user_usec 1\n")
	assert.Error(t, err)
	_, err = parseUsage("usage_usec x\n")
	assert.Error(t, err)

	assert.InDelta(t, 0.5, spread(50, 100), 1e-9)
	assert.InDelta(t, 0.5, spread(100, 50), 1e-9)
	assert.Zero(t, spread(0, 0))
}

func TestExitStatus(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	_ = cmd.Run()
	assert.Equal(t, 3, exitStatus(cmd.ProcessState))
	cmd = exec.Command("sh", "-c", "kill -9 $$")
	_ = cmd.Run()
	assert.Equal(t, 128+9, exitStatus(cmd.ProcessState))
}

func TestHelpers(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, workerMain([]string{"-id", "3", "-d", "20ms"}, &out, &errb))
	assert.Contains(t, out.String(), "worker 3: ")
	assert.Contains(t, errb.String(), "worker 3: spinning for 20ms")
	assert.Equal(t, 2, workerMain([]string{"-bogus"}, &out, &errb))
	assert.Equal(t, 7, standinMain([]string{"-delay", "1ms"}, &errb))
	assert.Equal(t, 3, standinMain([]string{"-delay", "1ms", "-status", "3"}, &errb))
	assert.Equal(t, 2, helper("nope", nil))
}

func TestListScenarios(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, listScenarios(&out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, len(builtinScenarios()))
	assert.True(t, strings.HasPrefix(lines[0], "console-flood\t"), lines[0])
}
