package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm"
)

// fakeQMP serves one QMP connection on a unix socket; handle answers
// each command line (nil: a plain {"return":{}}).
func fakeQMP(t *testing.T, handle func(w *bufio.Writer, cmd map[string]any)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		w := bufio.NewWriter(c)
		w.WriteString(`{"QMP": {"version": {"qemu": {"micro": 3, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": []}}` + "\n")
		w.Flush()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var cmd map[string]any
			if json.Unmarshal(sc.Bytes(), &cmd) != nil {
				return
			}
			if handle == nil || cmd["execute"] == "qmp_capabilities" {
				reply(w, cmd, `{}`)
				continue
			}
			handle(w, cmd)
		}
	}()
	return path
}

func reply(w *bufio.Writer, cmd map[string]any, ret string) {
	id, _ := json.Marshal(cmd["id"])
	w.WriteString(`{"return": ` + ret + `, "id": ` + string(id) + "}\n")
	w.Flush()
}

func TestQMP(t *testing.T) {
	path := fakeQMP(t, func(w *bufio.Writer, cmd map[string]any) {
		switch cmd["execute"] {
		case "stop":
			// An event before the reply, and a stale reply for another id.
			w.WriteString(`{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}` + "\n")
			w.WriteString(`{"return": {"stale": true}, "id": 9999}` + "\n")
			reply(w, cmd, `{}`)
		case "human-monitor-command":
			reply(w, cmd, `"CPU#0\nRAX=0000000000000001 RBX=0000000000000002\n"`)
		case "bogus":
			id, _ := json.Marshal(cmd["id"])
			w.WriteString(`{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}, "id": ` + string(id) + "}\n")
			w.Flush()
		case "quit":
			w.WriteString(`{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}` + "\n")
			reply(w, cmd, `{}`)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, path)
	require.NoError(t, err)
	defer q.close()
	assert.Equal(t, "7.2.3", q.version)

	ret, err := q.execute(ctx, "stop", nil)
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, string(ret), "the stale reply is skipped")

	ret, err = q.execute(ctx, "human-monitor-command", map[string]string{"command-line": "info registers"})
	require.NoError(t, err)
	var text string
	require.NoError(t, json.Unmarshal(ret, &text))
	assert.Contains(t, text, "RAX=0000000000000001")

	_, err = q.execute(ctx, "bogus", nil)
	assert.ErrorContains(t, err, "CommandNotFound")

	_, err = q.execute(ctx, "quit", nil)
	require.NoError(t, err)
	assert.Equal(t, "host-qmp-quit", q.reason("SHUTDOWN"))
	assert.Equal(t, "", q.reason("RESET"))
}

func TestQMPConnectionLoss(t *testing.T) {
	// A server that never answers anything but the handshake.
	path := fakeQMP(t, func(w *bufio.Writer, cmd map[string]any) {})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, path)
	require.NoError(t, err)
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	_, err = q.execute(short, "stop", nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	q.close()
	_, err = q.execute(ctx, "cont", nil)
	assert.Error(t, err)
}

func TestDialQMPGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := dialQMP(ctx, filepath.Join(t.TempDir(), "absent.sock"))
	assert.Error(t, err)
}

func TestParseRegisters(t *testing.T) {
	text := "CPU#0\nRAX=0000000000000001 RBX=0000000000000002 RCX=0000000000000003\n" +
		"RIP=ffffffff81e0148b RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n" +
		"ES =0000 0000000000000000 ffffffff 00c00000\nCS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]\n" +
		"CPU#1\nRAX=00000000000000ff\n"
	cpus := parseRegisters(text)
	require.Len(t, cpus, 2)
	assert.Equal(t, 0, cpus[0].CPU)
	assert.Equal(t, "ffffffff81e0148b", cpus[0].Regs["RIP"])
	assert.Equal(t, "0010", cpus[0].Regs["CS"], "segment lines give the selector")
	assert.Equal(t, "0000000000000003", cpus[0].Regs["RCX"])
	assert.Equal(t, 1, cpus[1].CPU)
	assert.Equal(t, "00000000000000ff", cpus[1].Regs["RAX"])

	assert.Empty(t, parseRegisters(""))
}

func TestArgs(t *testing.T) {
	cfg := vmm.Config{Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 ktstr.scenario=steady", CPUs: 2, MemMiB: 512, ConsoleLog: "/c.log"}
	args := strings.Join(Args(cfg, AccelTCG, "/w/bulk.sock", "/w/qmp.sock"), " ")
	for _, want := range []string{
		"-M pc", "-accel tcg", "-cpu max", "-m 512", "-smp 2", "-no-reboot", "-S",
		"-serial file:/c.log", "-kernel /k", "-initrd /i",
		"-device virtio-serial-pci",
		"-chardev socket,id=bulk,path=/w/bulk.sock,server=on,wait=off",
		"-device virtserialport,chardev=bulk,name=ktstr-bulk",
		"-qmp unix:/w/qmp.sock,server=on,wait=off",
	} {
		assert.Contains(t, args, want)
	}
	a := Args(cfg, AccelTCG, "/b", "/q")
	for i, s := range a {
		if s == "-append" {
			assert.Equal(t, cfg.Cmdline, a[i+1], "the command line is one argument")
		}
	}
	kvm := strings.Join(Args(vmm.Config{CPUs: 1, MemMiB: 256}, AccelKVM, "/b", "/q"), " ")
	assert.Contains(t, kvm, "-accel kvm -cpu host")
	assert.Contains(t, kvm, "-serial null")
}

func TestAccelChoice(t *testing.T) {
	native := func() KVMProbe { return KVMProbe{Native: true, Detail: "fast"} }
	slow := func() KVMProbe { return KVMProbe{Native: false, Detail: "slow"} }
	tests := []struct {
		accel string
		probe func() KVMProbe
		want  string
	}{
		{"", native, AccelKVM},
		{AccelAuto, slow, AccelTCG},
		{AccelTCG, native, AccelTCG},
		{AccelKVM, slow, AccelKVM},
	}
	for _, tt := range tests {
		got, why, err := (&Backend{Accel: tt.accel, Probe: tt.probe}).accel()
		require.NoError(t, err)
		assert.Equal(t, tt.want, got, "accel %q", tt.accel)
		assert.NotEmpty(t, why)
	}
	_, _, err := (&Backend{Accel: "hvf"}).accel()
	assert.Error(t, err)
}

func TestMissingQEMU(t *testing.T) {
	b := &Backend{Binary: "qemu-system-definitely-absent"}
	err := b.Available()
	var ee *vmm.EnvError
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, FixInstall, ee.Fix)
	_, err = b.Start(context.Background(), vmm.Config{})
	assert.True(t, errors.As(err, &ee))

	// Positive control: where QEMU is installed, it is found.
	if _, err := exec.LookPath(DefaultBinary); err == nil {
		assert.NoError(t, (&Backend{}).Available())
	}
}

func TestProbeKVMReportsSomething(t *testing.T) {
	p := ProbeKVM()
	assert.NotEmpty(t, p.Detail)
	if p.Native {
		assert.Less(t, p.Elapsed, probeNativeThreshold)
	}
}

func TestRingBuffer(t *testing.T) {
	var r ringBuffer
	r.Write([]byte(strings.Repeat("a", ringSize)))
	r.Write([]byte("\nqemu: error\n"))
	assert.True(t, strings.HasSuffix(r.tail(), "a qemu: error"))
	assert.LessOrEqual(t, len(r.tail()), ringSize)
}

// shutdownMachine is a machine around a stand-in process (argv) whose
// fake QMP reports the guest's shutdown in answer to "stop" and never
// replies, as QEMU 7.2 did when a stop raced the guest's power-off.
func shutdownMachine(t *testing.T, grace time.Duration, argv ...string) *machine {
	t.Helper()
	path := fakeQMP(t, func(w *bufio.Writer, cmd map[string]any) {
		if cmd["execute"] == "stop" {
			w.WriteString(`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}` + "\n")
			w.Flush()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, path)
	require.NoError(t, err)

	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "bulk.sock"))
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	conn, err := net.Dial("unix", l.Addr().String())
	require.NoError(t, err)

	cmd := exec.Command(argv[0], argv[1:]...)
	require.NoError(t, cmd.Start())
	m := &machine{cmd: cmd, qmp: q, bulk: conn.(*net.UnixConn), done: make(chan struct{}), exitGrace: grace}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	go m.reap()
	return m
}

func TestQEMUHungAfterShutdownIsKilled(t *testing.T) {
	m := shutdownMachine(t, 100*time.Millisecond, "sleep", "60")
	err := m.Pause()
	require.ErrorIs(t, err, ErrGuestShutdown, "the stop fails on SHUTDOWN, not after qmpTimeout")
	_, err = m.Registers()
	require.ErrorIs(t, err, ErrGuestShutdown, "later commands fail at once")

	exit, err := m.Wait()
	require.NoError(t, err)
	assert.Equal(t, vmm.ExitPoweroff, exit.Reason, "the guest powered off; QEMU hanging after that does not change it")
	assert.Contains(t, exit.Detail, "it was killed")
	assert.Contains(t, exit.Detail, "guest-shutdown")
}

func TestQEMUExitingAfterShutdownIsNotKilled(t *testing.T) {
	// Positive control: a QEMU that exits by itself within the grace.
	m := shutdownMachine(t, time.Minute, "sleep", "0.2")
	require.ErrorIs(t, m.Pause(), ErrGuestShutdown)
	exit, err := m.Wait()
	require.NoError(t, err)
	assert.Equal(t, vmm.Exit{Reason: vmm.ExitPoweroff}, exit, "no detail: nothing was killed")
	assert.False(t, m.killedAfterShutdown.Load())
}
