package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// BulkPortName is the name of the virtio-console port the host taps.
const BulkPortName = "ktstr-bulk"

// Exit statuses the agent reports in its EXIT frame beyond the
// scenario's own.
const (
	exitUsage = 2  // bad kernel command line or unknown scenario
	exitCrash = 70 // the agent panicked (EX_SOFTWARE)
)

// Lifecycle values sent in LIFE frames.
const (
	lifeUp       = 1 // agent up, port open
	lifeRunning  = 2 // scenario running
	lifeDone     = 3 // scenario done
	lifePowerOff = 4 // powering off
)

// settle is how long the agent lets the host drain the port before
// powering off; the driver returns from write once a buffer is queued,
// not once the host has taken it.
const settle = 100 * time.Millisecond

// runInit is PID 1: it prepares the guest, runs the scenario and powers
// off. It never returns.
func runInit(scens []scenario) {
	console := setupSystem()
	defer powerOff(console)

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintf(console, "ktstr-init: read /proc/cmdline: %v\n", err)
	}
	cfg, cfgErr := parseCmdline(string(cmdline))

	// A modular kernel's virtio modules, packed by the host: without
	// them there is no bulk port to find.
	loadModules(console, ModulesDir)
	dev, err := findPort(BulkPortName, 30*time.Second)
	if err != nil {
		fmt.Fprintf(console, "%s %v; nothing to report to, powering off\n", wire.NoBulkPortMarker, err)
		return
	}
	p, err := openPort(dev)
	if err != nil {
		fmt.Fprintf(console, "ktstr-init: %v; powering off\n", err)
		return
	}
	a := newAgent(cfg, p, console)
	a.logf("bulk port %s, scenario %s", dev, cfg.Scenario)
	a.goSafe(func() { a.readReplies(p) })

	reg, regErr := newRegistry(scens)
	code := a.run(reg, errors.Join(cfgErr, regErr))
	if err := a.sendStatus(wire.Exit, code); err != nil {
		a.logf("send EXIT: %v", err)
	}
	_ = a.send(wire.Lifecycle, []byte{lifePowerOff})
	a.logf("scenario %s done, exit status %d", cfg.Scenario, code)
	time.Sleep(settle)
}

// run sends SRDY and runs the chosen scenario, returning the status for
// the EXIT frame. A panic in the scenario is reported as CRSH.
func (a *agent) run(reg registry, cfgErr error) (code int) {
	defer func() {
		if v := recover(); v != nil {
			a.crash(v)
			code = exitCrash
		}
	}()
	if err := a.send(wire.SysRdy, nil); err != nil {
		a.logf("send SRDY: %v", err)
		return exitUsage
	}
	_ = a.send(wire.Lifecycle, []byte{lifeUp})
	if cfgErr != nil {
		a.reportErr(cfgErr)
		return exitUsage
	}
	sc, ok := reg.lookup(a.cfg.Scenario)
	if !ok {
		a.reportErr(fmt.Errorf("unknown scenario %q (known: %s)", a.cfg.Scenario, strings.Join(reg.names(), ", ")))
		return exitUsage
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if a.cfg.Scheduler != "" && !sc.ownsScheduler {
		s, err := a.startScheduler(a.cfg.Scheduler)
		if err != nil {
			a.reportErr(err)
			return 1
		}
		defer s.stop()
	}
	_ = a.send(wire.Lifecycle, []byte{lifeRunning})
	code, err := sc.run(ctx, a)
	if err != nil {
		a.reportErr(fmt.Errorf("scenario %s: %w", sc.name, err))
		if code == 0 {
			code = 1
		}
	}
	_ = a.send(wire.Lifecycle, []byte{lifeDone})
	select {
	case <-a.crashed:
		code = exitCrash
	default:
	}
	return code
}

// reportErr tells the host (SERR) and the console about err.
func (a *agent) reportErr(err error) {
	a.logf("%v", err)
	_ = a.send(wire.Stderr, []byte("ktstr-init: "+err.Error()+"\n"))
}

// setupSystem mounts the pseudo file systems and points stdin, stdout
// and stderr at the console. It returns the console for log lines.
func setupSystem() io.Writer {
	var problems []string
	mount := func(src, target, fstype string, flags uintptr) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			problems = append(problems, fmt.Sprintf("mkdir %s: %v", target, err))
			return
		}
		if err := unix.Mount(src, target, fstype, flags, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			problems = append(problems, fmt.Sprintf("mount %s on %s: %v", fstype, target, err))
		}
	}
	mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID)
	// The initramfs has no /dev/console node, so the kernel started us
	// without fds 0-2; take them from devtmpfs now.
	var console io.Writer = io.Discard
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup2(int(f.Fd()), fd)
		}
		console = os.Stderr
	}
	mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
	mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
	mount("cgroup2", cgroupRoot, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
	mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV)
	for _, p := range problems {
		fmt.Fprintf(console, "ktstr-init: %s\n", p)
	}
	return console
}

// findPort waits for the virtio-console port called name and returns
// its device node.
//
// A kernel with no virtio-console driver registered at all (built
// without it, or its module not loaded) cannot grow the port later:
// after noDriverGrace without the driver the wait ends early.
func findPort(name string, timeout time.Duration) (string, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		if dev, ok := lookupPort("/sys/class/virtio-ports", name); ok {
			return "/dev/" + dev, nil
		}
		if time.Since(start) > noDriverGrace && !exists("/sys/bus/virtio/drivers/virtio_console") {
			return "", fmt.Errorf("the kernel has no virtio_console driver (not built in, module not loaded), so no port named %q can appear", name)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-console port named %q appeared within %v", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noDriverGrace is how long findPort waits for the virtio_console driver
// to register before it concludes there is none.
const noDriverGrace = 2 * time.Second

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// lookupPort scans a /sys/class/virtio-ports directory for the port
// whose name file holds name and returns its directory name (vportNpM).
func lookupPort(dir, name string) (string, bool) {
	names, _ := filepath.Glob(filepath.Join(dir, "*", "name"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Base(filepath.Dir(n)), true
		}
	}
	return "", false
}

// port is the bulk port, driven with plain blocking read(2) and
// write(2) so that concurrent writers really race in the kernel.
type port struct {
	f  *os.File
	fd int
}

func openPort(dev string) (*port, error) {
	var f *os.File
	var err error
	// devtmpfs may lag a moment behind sysfs.
	for i := 0; i < 100; i++ {
		if f, err = os.OpenFile(dev, os.O_RDWR, 0); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("open bulk port: %w", err)
	}
	// Fd switches the file to blocking mode, which the raw calls need.
	return &port{f: f, fd: int(f.Fd())}, nil
}

// Write writes all of b, one write(2) per call unless the driver takes
// less.
func (p *port) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(p.fd, b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// rxRecheck bounds how long the reader sleeps before it looks at the
// port's receive ring again. Under QEMU (TCG) a host reply was seen to
// sit in the ring, unannounced, until the next one arrived 30 s later:
// a reader blocked in read(2) is only woken by the RX interrupt, while
// poll(2) looks at the ring itself (virtio_console's port_has_data).
const rxRecheck = 100 * time.Millisecond

// Read reads from the port's RX side. It waits in poll(2), looking at
// the ring again every rxRecheck, and reads once the port is readable
// (or hung up, when read returns EOF).
func (p *port) Read(b []byte) (int, error) {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(rxRecheck/time.Millisecond))
		if errors.Is(err, unix.EINTR) || err == nil && n == 0 {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll bulk port: %w", err)
		}
		break
	}
	for {
		n, err := unix.Read(p.fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// powerOff syncs and powers the machine off. PID 1 must never exit, so
// if the power-off fails it waits forever.
func powerOff(console io.Writer) {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(console, "ktstr-init: power off failed: %v\n", err)
	for {
		time.Sleep(time.Hour)
	}
}
