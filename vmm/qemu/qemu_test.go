package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/kvm/kvmapi"
	"github.com/ktstr/ktstr/vmm/regs"
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

// dump is "info registers -a" as QEMU 7.2 prints it: vCPU 0 in long
// mode, vCPU 1 still at the reset vector in real mode.
const dump = `
CPU#0
RAX=0000000000000001 RBX=0000000000000002 RCX=0000000000000003 RDX=0000000000000004
RSI=0000000000000005 RDI=0000000000000006 RBP=0000000000000007 RSP=ff802776c00c3ed8
R8 =0000000000000008 R9 =0000000000000009 R10=000000000000000a R11=000000000000000b
R12=000000000000000c R13=000000000000000d R14=000000000000000e R15=000000000000000f
RIP=ffffffff81e0148b RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
ES =0000 0000000000000000 ffffffff 00c00000
CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]
SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
DS =0000 0000000000000000 ffffffff 00c00000
FS =0000 00007f0000000000 ffffffff 00c00000
GS =0000 ffff88803ec00000 ffffffff 00c00000
LDT=0000 0000000000000000 ffffffff 00c00000
TR =0040 fffffe0000003000 00004087 00008b00 DPL=0 TSS64-busy
GDT=     fffffe0000001000 0000007f
IDT=     fffffe0000000000 00000fff
CR0=80050033 CR2=00007f1234567000 CR3=0000000002768000 CR4=00750ef0
DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000
DR6=00000000fffe0ff0 DR7=0000000000000400
EFER=0000000000000d01
FCW=037f FSW=0000 [ST=0] FTW=00 MXCSR=00001f80
FPR0=0000000000000000 0000 FPR1=0000000000000000 0000 FPR2=0000000000000000 0000 FPR3=0000000000000000 0000
XMM00=0000000000000000 0000000000000000 XMM01=0000000000000000 0000000000000000
CPU#1
EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000663
ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000
EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1
ES =0000 00000000 0000ffff 00009300
CS =f000 ffff0000 0000ffff 00009b00
SS =0000 00000000 0000ffff 00009300
DS =0000 00000000 0000ffff 00009300
FS =0000 00000000 0000ffff 00009300
GS =0000 00000000 0000ffff 00009300
LDT=0000 00000000 0000ffff 00008200
TR =0000 00000000 0000ffff 00008b00
GDT=     00000000 0000ffff
IDT=     00000000 0000ffff
CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
EFER=0000000000000000
`

func TestParseRegisters(t *testing.T) {
	cpus := parseRegisters(dump)
	require.Len(t, cpus, 2)
	c := cpus[0]
	assert.Equal(t, 0, c.CPU)
	assert.Empty(t, c.Missing(), "long mode: every register of the schema")
	for name, want := range map[string]uint64{
		"RAX": 1, "R8": 8, "R15": 0xf, "RSP": 0xff802776c00c3ed8,
		"RIP": 0xffffffff81e0148b, "RFLAGS": 0x246,
		"CS": 0x10, "CS_BASE": 0, "CS_LIMIT": 0xffffffff, "CS_ATTRS": 0xa09b00,
		"GS_BASE": 0xffff88803ec00000, "TR": 0x40, "TR_BASE": 0xfffffe0000003000, "TR_LIMIT": 0x4087,
		"GDT_BASE": 0xfffffe0000001000, "GDT_LIMIT": 0x7f, "IDT_LIMIT": 0xfff,
		"CR0": 0x80050033, "CR2": 0x7f1234567000, "CR3": 0x2768000, "CR4": 0x750ef0, "EFER": 0xd01,
	} {
		assert.Equal(t, want, c.Regs[name], name)
	}
	for _, gone := range []string{"DR7", "FCW", "FPR0", "XMM00", "CPL", "DPL", "RFL"} {
		assert.NotContains(t, c.Regs, gone, "not in the schema")
	}

	r := cpus[1]
	assert.Equal(t, 1, r.CPU)
	assert.Equal(t, uint64(0xfff0), r.Regs["RIP"], "EIP outside long mode")
	assert.Equal(t, uint64(2), r.Regs["RFLAGS"], "EFL")
	assert.Equal(t, uint64(0x663), r.Regs["RDX"])
	assert.Equal(t, uint64(0xffff0000), r.Regs["CS_BASE"])
	assert.Equal(t, []string{"R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"}, r.Missing(), "a 32-bit dump has no R8-R15")

	single := parseRegisters("RAX=00000000000000ff RBX=0000000000000000\n")
	require.Len(t, single, 1, "single-CPU output has no CPU# line")
	assert.Equal(t, uint64(0xff), single[0].Regs["RAX"])
	assert.Empty(t, parseRegisters(""))

	// What Registers writes reads back in the schema.
	raw, err := regs.Marshal(cpus)
	require.NoError(t, err)
	back, err := regs.Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, cpus, back)
}

func TestArgs(t *testing.T) {
	cfg := vmm.Config{Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 ktstr.scenario=steady", CPUs: 2, MemMiB: 512, ConsoleLog: "/c.log"}
	args := strings.Join(Args(cfg, AccelTCG, Endpoints{Bulk: "/w/bulk.sock", QMP: "/w/qmp.sock", ConsoleFD: 3}), " ")
	for _, want := range []string{
		"-M pc", "-accel tcg", "-cpu max", "-m 512", "-smp 2", "-no-reboot",
		"-add-fd fd=3,set=1,opaque=serial-console -chardev file,id=console,path=/dev/fdset/1,append=on -serial chardev:console",
		"-kernel /k", "-initrd /i",
		"-device virtio-serial-pci",
		"-chardev socket,id=bulk,path=/w/bulk.sock,server=on,wait=on",
		"-device virtserialport,chardev=bulk,name=ktstr-bulk",
		"-qmp unix:/w/qmp.sock,server=on,wait=off",
	} {
		assert.Contains(t, args, want)
	}
	assert.NotContains(t, strings.Fields(args), "-S", "the guest starts as soon as the recorder holds the bulk port")
	assert.NotContains(t, args, "/c.log", "QEMU never writes the console log itself: it has no budget there")
	a := Args(cfg, AccelTCG, Endpoints{Bulk: "/b", QMP: "/q"})
	for i, s := range a {
		if s == "-append" {
			assert.Equal(t, cfg.Cmdline, a[i+1], "the command line is one argument")
		}
	}
	kvm := strings.Join(Args(vmm.Config{CPUs: 1, MemMiB: 256}, AccelKVM, Endpoints{Bulk: "/b", QMP: "/q"}), " ")
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
	// The decision needs DecisionLimit (20 ms); the margin is for a busy
	// host's timer, and still far below the emulator's whole loop (1.2 s).
	assert.LessOrEqual(t, p.Elapsed, kvmapi.DecisionLimit+300*time.Millisecond, "the accel choice waits no longer than the decision needs")
	if p.Native {
		assert.Contains(t, p.Detail, ": native")
	}
	t.Log(p.Detail)
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

// processState returns the state letter of /proc/PID/stat (R, S, T, …).
func processState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	require.Positive(t, i, "stat: %s", s)
	return strings.Fields(s[i+1:])[0]
}

// TestFreezeStopsTheProcess checks that the QEMU machine is a
// vmm.Freezer whose Freeze stops the process at once (SIGSTOP: state T,
// no QMP round trip), and that Stop then kills it. Control: before
// Freeze the process is not stopped.
func TestFreezeStopsTheProcess(t *testing.T) {
	m := shutdownMachine(t, time.Minute, "sleep", "60")
	pid := m.cmd.Process.Pid
	require.NotEqual(t, "T", processState(t, pid), "running before Freeze")

	var f vmm.Freezer = m
	require.NoError(t, f.Freeze())
	require.Eventually(t, func() bool { return processState(t, pid) == "T" }, 2*time.Second, time.Millisecond,
		"Freeze leaves the process stopped")
	require.NoError(t, m.Stop(), "a frozen QEMU is killed")
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the frozen process was not gone after Stop")
	}
	require.NoError(t, m.Freeze(), "Freeze after the process is gone does nothing")
}

func TestEnviron(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"none set", []string{"PATH=/bin"}, []string{"PATH=/bin", "GLIBC_TUNABLES=" + MallocTunable}},
		{"empty", []string{"GLIBC_TUNABLES="}, []string{"GLIBC_TUNABLES=" + MallocTunable}},
		{"others kept", []string{"GLIBC_TUNABLES=glibc.malloc.arena_max=1", "HOME=/h"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.arena_max=1:" + MallocTunable, "HOME=/h"}},
		{"the user's choice stands", []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0"}, []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0"}},
		{"the user's choice among others", []string{"GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.hugetlb=2"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.hugetlb=2"}},
		{"a longer name is not the tunable", []string{"GLIBC_TUNABLES=xglibc.malloc.hugetlb=0"},
			[]string{"GLIBC_TUNABLES=xglibc.malloc.hugetlb=0:" + MallocTunable}},
		{"the last one is what os/exec passes", []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0", "GLIBC_TUNABLES=a=1"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0", "GLIBC_TUNABLES=a=1:" + MallocTunable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.env)
			assert.Equal(t, tc.want, Environ(tc.env))
			assert.Equal(t, in, tc.env, "the caller's slice is not changed")
		})
	}
}

// TestStartPassesEnviron checks that the QEMU process Start runs gets
// Environ's environment: a stand-in binary writes its environment down
// and exits.
func TestStartPassesEnviron(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	bin := filepath.Join(dir, "qemu")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\nenv > "+envFile+"\nexit 1\n"), 0o755))
	for _, f := range []string{"k", "i"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
	}
	t.Setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
	b := &Backend{Binary: bin, Accel: AccelTCG}
	_, err := b.Start(context.Background(), vmm.Config{Kernel: filepath.Join(dir, "k"), Initrd: filepath.Join(dir, "i"), CPUs: 1, MemMiB: 64, WorkDir: dir})
	require.Error(t, err, "the stand-in exits at once")
	env, err := os.ReadFile(envFile)
	require.NoError(t, err)
	assert.Contains(t, strings.Split(string(env), "\n"), "GLIBC_TUNABLES=glibc.malloc.arena_max=2:"+MallocTunable)
}

// TestMallocTunableTakesEffect checks, with the installed QEMU and C
// library, that Environ's tunable reaches QEMU's malloc: its heap is
// marked for huge pages (smaps VmFlags "hg"). Control: without the
// tunable it is not. glibc asks for them with madvise only where the
// host's THP mode is "madvise".
func TestMallocTunableTakesEffect(t *testing.T) {
	bin, err := exec.LookPath(DefaultBinary)
	if err != nil {
		t.Skipf("%s is not installed (%s)", DefaultBinary, FixInstall)
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || !strings.Contains(string(mode), "[madvise]") {
		t.Skipf("the host's THP mode is not madvise (%q), so glibc does not madvise its heap", strings.TrimSpace(string(mode)))
	}
	heapMarked := func(env []string) bool {
		cmd := exec.Command(bin, "-M", "none", "-accel", "tcg", "-nodefaults", "-display", "none", "-S")
		cmd.Env = env
		require.NoError(t, cmd.Start())
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		smaps := fmt.Sprintf("/proc/%d/smaps", cmd.Process.Pid)
		var marked, seen bool
		require.Eventually(t, func() bool {
			b, err := os.ReadFile(smaps)
			if err != nil {
				return false
			}
			inHeap := false
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasSuffix(l, "[heap]") {
					inHeap, seen = true, true
				} else if v, ok := strings.CutPrefix(l, "VmFlags:"); ok && inHeap {
					marked = slices.Contains(strings.Fields(v), "hg")
					return true
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond, "QEMU's smaps has a [heap]")
		require.True(t, seen)
		return marked
	}
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GLIBC_TUNABLES=") })
	assert.True(t, heapMarked(Environ(base)), "with Environ's tunable QEMU's heap is marked for huge pages")
	assert.False(t, heapMarked(base), "control: without it, it is not")
}

// TestQMPEventFloodHoldsNothing: events come as fast as the guest makes
// QEMU emit them (it opens and closes its port in a loop); the client
// keeps no list of them, only the last reason per event name, and still
// answers its command. A plain command with no events is the control.
func TestQMPEventFloodHoldsNothing(t *testing.T) {
	for _, events := range []int{0, 200_000} {
		path := fakeQMP(t, func(w *bufio.Writer, cmd map[string]any) {
			for i := range events {
				fmt.Fprintf(w, `{"event": "VSERPORT_CHANGE", "data": {"id": "bulk", "open": %t}, "timestamp": {"seconds": 1, "microseconds": 2}}`+"\n", i%2 == 0)
			}
			reply(w, cmd, `{}`)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		q, err := dialQMP(ctx, path)
		require.NoError(t, err)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = q.execute(ctx, "stop", nil)
		require.NoError(t, err, "%d events before the reply", events)
		runtime.GC()
		runtime.ReadMemStats(&after)
		assert.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(1<<20), "heap held after %d events", events)
		assert.Empty(t, q.reason("VSERPORT_CHANGE"), "the events have no reason field")
		q.close()
		cancel()
	}
}
