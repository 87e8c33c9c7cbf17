// Package qemu is the vmm.Backend that runs guests in a
// qemu-system-x86_64 process.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is the source of the bytes: the guest's bulk port is a
// virtserialport named "ktstr-bulk" on a unix-socket chardev, and each
// read from that socket is one delivery for the coordinator's tap. QMP
// (stop, cont, quit, "info registers") backs the live sinks.
//
// QEMU is started paused (-S); Start connects the bulk socket and QMP
// and only then lets the guest run, so no byte the guest writes can be
// lost before the host listens. KVM is used only where ProbeKVM shows it
// runs guests at native speed; otherwise TCG.
package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm"
)

// DefaultBinary is the QEMU system emulator the backend runs.
const DefaultBinary = "qemu-system-x86_64"

// FixInstall is the command that installs QEMU on Debian.
const FixInstall = "apt-get install -y qemu-system-x86"

// Accelerator choices for Backend.Accel.
const (
	AccelAuto = "auto" // KVM where ProbeKVM says native, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Backend starts guests under QEMU. The zero value runs DefaultBinary
// with AccelAuto.
type Backend struct {
	Binary string // QEMU binary; empty: DefaultBinary looked up in PATH
	Accel  string // AccelAuto (empty), AccelKVM or AccelTCG
	// AccelReason says why Accel was chosen (set by ChooseAccel);
	// empty: "requested".
	AccelReason string
	// Probe replaces ProbeKVM (tests); nil: ProbeKVM.
	Probe func() KVMProbe
}

// Name returns "qemu".
func (b *Backend) Name() string { return "qemu" }

// Available reports whether the QEMU binary can be found, as a
// *vmm.EnvError naming the install command if not.
func (b *Backend) Available() error {
	_, err := b.binary()
	return err
}

func (b *Backend) binary() (string, error) {
	name := b.Binary
	if name == "" {
		name = DefaultBinary
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", &vmm.EnvError{Missing: name, Fix: FixInstall, Err: err}
	}
	return p, nil
}

// accel picks the accelerator and says why.
func (b *Backend) accel() (string, string, error) {
	why := b.AccelReason
	if why == "" {
		why = "requested"
	}
	switch b.Accel {
	case AccelTCG:
		return AccelTCG, why, nil
	case AccelKVM:
		return AccelKVM, why, nil
	case "", AccelAuto:
		probe := b.Probe
		if probe == nil {
			probe = ProbeKVM
		}
		p := probe()
		if p.Native {
			return AccelKVM, p.Detail, nil
		}
		return AccelTCG, p.Detail, nil
	default:
		return "", "", fmt.Errorf("qemu: unknown accelerator %q (want auto, kvm or tcg)", b.Accel)
	}
}

// ChooseAccel settles an "auto" accelerator now, running the KVM speed
// probe, so that Start does not: a caller that has other start-up work
// runs it beside the probe, and the run clock, which starts with Start,
// measures the guest and not the probe. Accel is then kvm or tcg and
// AccelReason says why.
func (b *Backend) ChooseAccel() error {
	accel, why, err := b.accel()
	if err != nil {
		return err
	}
	b.Accel, b.AccelReason = accel, why
	return nil
}

// MallocTunable is the glibc tunable Environ gives QEMU: back its malloc
// heaps with transparent huge pages (madvise). Why: a killed QEMU is
// gone only once the host has freed its memory, page by page, and its
// 4 KiB heap pages were about 0.8 ms of the 6.2-6.6 ms median from an
// SCDX to the VM being gone on the build machine (docs/design.md, "What
// recording costs"). glibc before 2.35 and other C libraries ignore it.
const MallocTunable = "glibc.malloc.hugetlb=1"

// Environ returns the environment QEMU runs with: env, with
// MallocTunable added to GLIBC_TUNABLES unless that sets
// glibc.malloc.hugetlb already (the user's choice stands; "=0" turns it
// off). As os/exec passes only the last of repeated variables, the last
// GLIBC_TUNABLES is the one read and extended.
func Environ(env []string) []string {
	out := slices.Clone(env)
	for i := len(out) - 1; i >= 0; i-- {
		v, ok := strings.CutPrefix(out[i], "GLIBC_TUNABLES=")
		switch {
		case !ok:
			continue
		case v == "":
			out[i] += MallocTunable
		case !strings.Contains(":"+v, ":glibc.malloc.hugetlb="):
			out[i] += ":" + MallocTunable
		}
		return out
	}
	return append(out, "GLIBC_TUNABLES="+MallocTunable)
}

// Endpoints are where QEMU's channels to the recorder go: the unix
// sockets it listens on, in the run's work directory, and the pipe the
// serial console writes to.
type Endpoints struct {
	Bulk string // the bulk port's chardev socket
	QMP  string // the QMP monitor's socket
	// ConsoleFD is the descriptor number QEMU inherits the serial
	// console's pipe as (3 for the first of exec.Cmd.ExtraFiles); 0: no
	// console (-serial null).
	ConsoleFD int
}

// Args returns QEMU's command line for cfg (without the binary), with
// the bulk port, QMP and the serial console on ends. The guest starts
// once a client holds the bulk port.
func Args(cfg vmm.Config, accel string, ends Endpoints) []string {
	cpu := "max"
	if accel == AccelKVM {
		cpu = "host"
	}
	serial := []string{"-serial", "null"}
	if ends.ConsoleFD > 0 {
		// The console goes through the recorder, not to a file QEMU
		// writes, so that its log has a budget (vmm.ConsoleLog): a guest
		// printing without end must not fill the host's disk. A pipe, not
		// a socket: the UART sends each byte on its own, and a pipe packs
		// them into its pages where a socket charges each one a buffer,
		// so a socket filled, and stalled the guest, after a few hundred
		// bytes.
		serial = []string{
			"-add-fd", "fd=" + strconv.Itoa(ends.ConsoleFD) + ",set=1,opaque=serial-console",
			"-chardev", "file,id=console,path=/dev/fdset/1,append=on", // append: QEMU would truncate the file, and a pipe cannot be
			"-serial", "chardev:console",
		}
	}
	args := []string{
		"-M", "pc", "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(cfg.MemMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
	}
	args = append(args, serial...)
	return append(args,
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", cfg.Cmdline,
		"-device", "virtio-serial-pci",
		// wait=on: QEMU starts the guest only once the recorder holds
		// the bulk port, so no byte is written before anyone reads, and
		// the guest's boot need not wait for a QMP round trip.
		"-chardev", "socket,id=bulk,path="+ends.Bulk+",server=on,wait=on",
		"-device", "virtserialport,chardev=bulk,name=ktstr-bulk",
		"-qmp", "unix:"+ends.QMP+",server=on,wait=off",
	)
}

// Start boots cfg in a new QEMU process. The guest is running when it
// returns.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (vmm.Machine, error) {
	bin, err := b.binary()
	if err != nil {
		return nil, err
	}
	for what, p := range map[string]string{"kernel": cfg.Kernel, "initramfs": cfg.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", what, err)
		}
	}
	if cfg.CPUs < 1 || cfg.MemMiB < 64 {
		return nil, fmt.Errorf("qemu: need at least 1 CPU and 64 MiB (got %d CPUs, %d MiB)", cfg.CPUs, cfg.MemMiB)
	}
	accel, why, err := b.accel()
	if err != nil {
		return nil, err
	}
	dir := cfg.WorkDir
	if dir == "" {
		return nil, errors.New("qemu: Config.WorkDir is required (it holds the sockets)")
	}
	ends := Endpoints{Bulk: filepath.Join(dir, "bulk.sock"), QMP: filepath.Join(dir, "qmp.sock")}
	if len(ends.Bulk) > 100 {
		return nil, fmt.Errorf("qemu: work directory %s is too long for a unix socket path; use a shorter one", dir)
	}
	console, err := cfg.OpenConsoleLog()
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	m := &machine{done: make(chan struct{}), console: console, exitGrace: exitGrace}
	consoleR, consoleW := -1, (*os.File)(nil)
	if console != nil {
		if consoleR, consoleW, err = consolePipe(); err != nil {
			_ = console.Close()
			return nil, err
		}
		ends.ConsoleFD = 3 // the first of ExtraFiles
	}
	cmd := exec.Command(bin, Args(cfg, accel, ends)...)
	if consoleW != nil {
		cmd.ExtraFiles = []*os.File{consoleW}
	}
	cmd.Env = Environ(os.Environ())
	cmd.Stdout = &m.output
	cmd.Stderr = &m.output
	// QEMU must not outlive the recorder, even one killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	if consoleW != nil {
		consoleW.Close() // QEMU holds the write end now: EOF when it exits
	}
	if err != nil {
		if consoleR >= 0 {
			unix.Close(consoleR)
		}
		_ = console.Close()
		return nil, fmt.Errorf("qemu: start %s: %w", bin, err)
	}
	m.cmd = cmd
	if consoleR >= 0 {
		m.consoleDone = make(chan struct{})
		go m.copyConsole(consoleR)
	}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.done)
	}()
	fail := func(err error) (vmm.Machine, error) {
		_ = cmd.Process.Kill()
		<-m.done
		m.closeConsole()
		if out := m.output.tail(); out != "" {
			err = fmt.Errorf("%w; QEMU said: %s", err, out)
		}
		return nil, err
	}

	// Give up early if QEMU dies before it listens.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-sctx.Done():
		}
	}()
	// The bulk port first: QEMU waits for it (wait=on) before it starts
	// the guest, and before it listens on QMP.
	conn, err := dialUnix(sctx, ends.Bulk)
	if err != nil {
		return fail(fmt.Errorf("qemu: connect bulk port socket: %w", err))
	}
	m.bulk = conn.(*net.UnixConn)
	q, err := dialQMP(sctx, ends.QMP)
	if err != nil {
		return fail(fmt.Errorf("qemu: %w", err))
	}
	m.qmp = q
	m.info = map[string]string{
		"accel":        accel,
		"accel_reason": why,
		"qemu":         bin,
		"qemu_version": q.version,
		"machine":      "pc",
		"transport":    "virtio-serial-pci",
	}
	go m.reap()
	return m, nil
}

// dialUnix connects to the unix socket at path, retrying until QEMU
// listens on it or ctx ends.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Millisecond):
		}
	}
}

// exitGrace is how long QEMU may take to exit after it reports the
// guest's shutdown before it is killed. QEMU 7.2 under TCG was seen to
// report SHUTDOWN and then never exit when a QMP "stop" raced the
// guest's power-off; normally it exits within milliseconds.
const exitGrace = 3 * time.Second

// reap kills QEMU if it has not exited exitGrace after reporting the
// guest's shutdown, so a run whose guest powered off ends as a power-off
// rather than by the watchdog.
func (m *machine) reap() {
	select {
	case <-m.done:
		return
	case <-m.qmp.alive.Done():
	}
	t := time.NewTimer(m.exitGrace)
	defer t.Stop()
	select {
	case <-m.done:
		return
	case <-t.C:
	}
	m.killedAfterShutdown.Store(true)
	_ = m.cmd.Process.Kill()
}

// machine is one QEMU process.
type machine struct {
	cmd     *exec.Cmd
	qmp     *qmp
	bulk    *net.UnixConn
	info    map[string]string
	output  ringBuffer      // QEMU's own stdout and stderr, tail kept
	console *vmm.ConsoleLog // the serial console's log (nil: none)
	// consoleDone is closed once the console's pipe has ended: QEMU's
	// last output is then in the log. nil: no console is read.
	consoleDone  chan struct{}
	consoleOnce  sync.Once
	consoleError error // from closing the log, once consoleDone is closed
	stopped      atomic.Bool
	frozen       atomic.Bool   // Freeze stopped the process
	done         chan struct{} // closed when the process has exited
	waitErr      error         // valid once done is closed

	exitGrace           time.Duration // how long reap waits (exitGrace but in tests)
	killedAfterShutdown atomic.Bool   // reap had to kill QEMU
}

// Bulk returns the bulk port: reads are TX deliveries as the socket
// hands them over, writes go to the guest's RX side.
func (m *machine) Bulk() io.ReadWriter { return bulkPort{m.bulk} }

type bulkPort struct{ c *net.UnixConn }

func (p bulkPort) Read(b []byte) (int, error) {
	n, err := p.c.Read(b)
	if err != nil && errors.Is(err, net.ErrClosed) {
		err = io.EOF
	}
	return n, err
}

func (p bulkPort) Write(b []byte) (int, error) { return p.c.Write(b) }

// qmpTimeout bounds one QMP command.
const qmpTimeout = 5 * time.Second

// command runs one QMP command for Pause, Resume or Registers. It fails
// at once with ErrGuestShutdown once QEMU has reported the guest's
// shutdown, rather than waiting out qmpTimeout for a QEMU on its way out.
func (m *machine) command(cmd string, args any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(m.qmp.alive, qmpTimeout)
	defer cancel()
	return m.qmp.execute(ctx, cmd, args)
}

// Pause stops every vCPU (QMP stop).
func (m *machine) Pause() error {
	_, err := m.command("stop", nil)
	return err
}

// Resume lets the vCPUs run again (QMP cont).
func (m *machine) Resume() error {
	_, err := m.command("cont", nil)
	return err
}

// The QEMU machine stops its vCPUs by freezing the process: the
// coordinator's stop latency depends on it (it was once lost in a merge,
// and SCDX → vCPUs stopped went from 0.05 ms to never).
var _ vmm.Freezer = (*machine)(nil)

// Freeze stops every vCPU at once by stopping the QEMU process
// (SIGSTOP): microseconds, where a QMP "stop" is a round trip through
// QEMU's main loop. The guest then runs no further instruction; Stop
// ends it.
func (m *machine) Freeze() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.frozen.Store(true)
	if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.frozen.Store(false)
		return fmt.Errorf("qemu: freeze (SIGSTOP): %w", err)
	}
	return nil
}

// Stop ends the guest now: QMP quit, and a kill if QEMU does not go. A
// frozen QEMU cannot answer QMP, and its guest runs no more: it is
// killed at once.
func (m *machine) Stop() error {
	m.stopped.Store(true)
	select {
	case <-m.done:
		return nil
	default:
	}
	if m.frozen.Load() {
		if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("qemu: kill the frozen guest: %w", err)
		}
		<-m.done
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, qerr := m.qmp.execute(ctx, "quit", nil)
	select {
	case <-m.done:
		return nil
	case <-time.After(2 * time.Second):
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("qemu: kill after quit failed (%v): %w", qerr, err)
	}
	return nil
}

// consolePoll is how often copyConsole looks at the console's pipe.
// The read end is non-blocking and outside Go's network poller, and is
// read on a timer, because both other ways cost the guest:
//   - through the poller, each byte QEMU's UART writes (it sends every
//     byte on its own) woke the poller: 0.67 s of the recorder's system
//     time for a guest printing 1 MB;
//   - a blocking read(2) holds the recorder's only P while it waits
//     (the recorder runs on one P beside a guest that fills the host,
//     Run.MakeRoom), so the bulk port's next delivery waited for the
//     runtime's monitor to take the P back: SCDX → vCPUs stopped went
//     from 0.1 to 2.4 ms at the worst, and the VM-gone time up with it.
//
// A timer read costs a few µs, and holds nothing; the log is for humans,
// so 5 ms of delay costs nothing.
const consolePoll = 5 * time.Millisecond

// consolePipeSize is the capacity asked for the console's pipe: QEMU's
// writes wait only when the guest prints this much within consolePoll
// (1 MiB is what Linux lets any user ask for).
const consolePipeSize = 1 << 20

// consolePipe returns the serial console's pipe, enlarged to
// consolePipeSize where the host allows it: the read end's descriptor,
// non-blocking (copyConsole's), and the write end, blocking, for QEMU.
func consolePipe() (r int, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return -1, nil, fmt.Errorf("qemu: the serial console's pipe: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return -1, nil, fmt.Errorf("qemu: the serial console's pipe: %w", err)
	}
	// A host that refuses the size keeps its default (64 KiB); the guest
	// then only waits sooner.
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, consolePipeSize)
	return fds[0], os.NewFile(uintptr(fds[1]), "console-pipe-w"), nil
}

// copyConsole writes the serial console's bytes into the log until QEMU
// exits (its end of the pipe closes), reading the pipe every
// consolePoll; it closes r.
func (m *machine) copyConsole(r int) {
	defer close(m.consoleDone)
	defer unix.Close(r)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(r, buf)
		switch {
		case n > 0:
			_, _ = m.console.Write(buf[:n])
			if n == len(buf) {
				continue // more may be waiting
			}
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return // EOF (n == 0): QEMU is gone; or the pipe failed
		}
		time.Sleep(consolePoll)
	}
}

// closeConsole waits for the console's pipe to end and closes the log
// (once; later calls return at once).
func (m *machine) closeConsole() {
	m.consoleOnce.Do(func() {
		if m.consoleDone != nil {
			<-m.consoleDone
		}
		m.consoleError = m.console.Close()
	})
}

// Wait blocks until QEMU has exited and says how the guest ended.
func (m *machine) Wait() (vmm.Exit, error) {
	exit, err := m.wait()
	return exit.WithConsole(m.console, m.consoleError), err
}

// wait is Wait but for the console log.
func (m *machine) wait() (vmm.Exit, error) {
	<-m.done
	m.closeConsole()
	m.bulk.Close()
	m.qmp.close()
	<-m.qmp.done
	code := 0
	var ee *exec.ExitError
	if errors.As(m.waitErr, &ee) {
		code = ee.ExitCode()
	}
	shutdown := m.qmp.reason("SHUTDOWN")
	var detail string
	if m.killedAfterShutdown.Load() {
		detail = fmt.Sprintf("QEMU reported SHUTDOWN (%s) but had not exited %v later; it was killed", shutdown, m.exitGrace)
	}
	switch {
	case m.stopped.Load():
		return vmm.Exit{Reason: vmm.ExitStopped, Code: code}, nil
	case shutdown == "guest-shutdown":
		return vmm.Exit{Reason: vmm.ExitPoweroff, Code: code, Detail: detail}, nil
	case shutdown == "guest-reset":
		// With -no-reboot a reset ends QEMU; the agent never reboots, so
		// this is a kernel panic (panic=-1) or a triple fault.
		return vmm.Exit{Reason: vmm.ExitReset, Code: code, Detail: detail}, nil
	case shutdown == "guest-panic":
		return vmm.Exit{Reason: vmm.ExitPanic, Code: code, Detail: detail}, nil
	case m.waitErr != nil:
		return vmm.Exit{Reason: vmm.ExitCrash, Code: code}, fmt.Errorf("qemu exited: %w; QEMU said: %s", m.waitErr, m.output.tail())
	default:
		return vmm.Exit{Reason: vmm.ExitOther, Code: code}, nil
	}
}

// Info describes the machine for trace metadata.
func (m *machine) Info() map[string]string {
	c := make(map[string]string, len(m.info))
	for k, v := range m.info {
		c[k] = v
	}
	return c
}

// ringBuffer keeps the last ringSize bytes written to it.
type ringBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const ringSize = 4096

func (r *ringBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if len(r.buf) > ringSize {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-ringSize:]...)
	}
	return len(p), nil
}

// tail returns the kept output on one line.
func (r *ringBuffer) tail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(strings.Fields(string(bytes.TrimSpace(r.buf))), " ")
}
