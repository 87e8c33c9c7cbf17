//go:build linux && amd64

package kvm

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/boot"
	"github.com/ktstr/ktstr/vmm/bus"
	"github.com/ktstr/ktstr/vmm/kvm/kvmapi"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// Backend starts guests under the native VMM. The zero value is ready to
// use.
type Backend struct {
	// Timeout, if positive, stops the guest with reason "timeout" once it
	// has run that long.
	Timeout time.Duration
	// QueueSize is the virtqueue size of the console; 0 means 128.
	QueueSize uint16
	// UnpackBzImage makes Start unpack a zstd-compressed bzImage on the
	// host and enter the kernel directly, skipping its decompressor.
	UnpackBzImage bool
	// Device is the KVM device node to open; empty means DefaultDevice.
	Device string
	// Transport is what the virtio console sits behind: TransportPCI
	// (empty) or TransportMMIO.
	Transport string
}

// Name returns "native".
func (*Backend) Name() string { return "native" }

var _ vmm.Backend = (*Backend)(nil)

// Machine is a guest running under the native VMM.
type Machine struct {
	vm      *kvmapi.VM
	console *virtio.Console
	// consoleLog is where the UART and the virtio console's port 0 write
	// (nil: discarded); consoleErr is from closing it, once done is closed.
	consoleLog *vmm.ConsoleLog
	consoleErr error

	// pio and mmio route the guest's port I/O and MMIO to the devices
	// (devices.go); the run loop only hands exits to them.
	pio, mmio *bus.Bus

	// kickMu orders kicks (which write each vCPU's kvm_run page) before
	// the release of those pages.
	kickMu   sync.Mutex
	released bool

	// req holds the pause and stop requests the vCPU threads poll after
	// every exit; mu and cond guard the rest.
	req    atomic.Uint32
	mu     sync.Mutex
	cond   *sync.Cond
	parked int
	live   int
	exit   vmm.Exit
	err    error
	ended  bool
	done   chan struct{}
	timer  *time.Timer
	start  time.Time
	info   map[string]string

	exits     atomic.Uint64
	ioExits   atomic.Uint64
	mmioExits atomic.Uint64
}

const (
	reqPause = 1 << iota
	reqStop
)

var _ vmm.Machine = (*Machine)(nil)

// Start boots the guest described by cfg: it loads cfg.Kernel (bzImage or
// ELF) and cfg.Initrd, builds the devices and starts one thread per
// vCPU. The guest is running when Start returns.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (_ vmm.Machine, err error) {
	if cfg.CPUs < 1 || cfg.CPUs > boot.MaxCPUs {
		return nil, fmt.Errorf("native backend: %d vCPUs is outside 1..%d", cfg.CPUs, boot.MaxCPUs)
	}
	transport, err := b.transport()
	if err != nil {
		return nil, err
	}
	kernel, err := os.ReadFile(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("native backend: reading the kernel: %w", err)
	}
	var initrd []byte
	if cfg.Initrd != "" {
		if initrd, err = os.ReadFile(cfg.Initrd); err != nil {
			return nil, fmt.Errorf("native backend: reading the initrd: %w", err)
		}
	}
	v, err := kvmapi.NewVM(b.device(), cfg.MemMiB)
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	m := &Machine{vm: v, done: make(chan struct{}), info: map[string]string{}}
	m.cond = sync.NewCond(&m.mu)
	defer func() {
		if err != nil {
			if m.console != nil {
				m.console.Close()
			}
			v.Close()
			_ = m.consoleLog.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := v.CreateIRQChip(); err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	layout, err := m.buildDevices(cfg, transport, b.queueSize())
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	st, err := loadGuest(v, kernel, initrd, cfg, layout, b.UnpackBzImage)
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	base, err := v.SupportedCPUID()
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	for i := range cfg.CPUs {
		c, err := v.NewVCPU(i)
		if err != nil {
			return nil, fmt.Errorf("native backend: %w", err)
		}
		var s *boot.CPUState
		if i == 0 {
			s = &st
		}
		if err := c.Setup(base, s, v.IRQChip()); err != nil {
			return nil, fmt.Errorf("native backend: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.info["accel"] = "kvm"
	m.info["vmm"] = "ktstr-native"
	for k, val := range layout.info {
		m.info[k] = val
	}
	m.info["irqchip"] = strconv.FormatBool(v.IRQChip())
	m.info["irqfd"] = strconv.FormatBool(v.IRQFD())
	m.info["queue_size"] = strconv.Itoa(int(b.queueSize()))
	m.start = time.Now()
	m.live = len(v.VCPUs())
	// The timer is set before the vCPU threads start: the last of them
	// to end stops it.
	if b.Timeout > 0 {
		m.timer = time.AfterFunc(b.Timeout, func() { m.end(vmm.Exit{Reason: vmm.ExitTimeout}, nil) })
	}
	for _, c := range v.VCPUs() {
		go m.runVCPU(c)
	}
	return m, nil
}

func (b *Backend) device() string {
	if b.Device == "" {
		return DefaultDevice
	}
	return b.Device
}

func (b *Backend) queueSize() uint16 {
	if b.QueueSize == 0 {
		return 128
	}
	return b.QueueSize
}

// transport returns the console's transport, TransportPCI by default.
func (b *Backend) transport() (string, error) {
	switch {
	case b.Transport == "":
		return TransportPCI, nil
	case KnownTransport(b.Transport):
		return b.Transport, nil
	}
	return "", fmt.Errorf("native backend: transport %q: want %s", b.Transport, strings.Join(Transports(), " or "))
}

// loadGuest loads the kernel and initrd and writes the boot structures,
// with what the device layout adds to the command line and the MP table.
func loadGuest(v *kvmapi.VM, kernel, initrd []byte, cfg vmm.Config, layout layout, unpack bool) (boot.CPUState, error) {
	load := boot.LoadKernel
	if unpack && !bytes.HasPrefix(kernel, []byte(elf.ELFMAG)) {
		load = boot.LoadBzImageUnpacked
	}
	k, err := load(v.Mem(), kernel)
	if err != nil {
		return boot.CPUState{}, fmt.Errorf("loading %s: %w", cfg.Kernel, err)
	}
	cmdline := cfg.Cmdline
	if layout.cmdline != "" {
		cmdline = strings.TrimSpace(cmdline + " " + layout.cmdline)
	}
	if err := boot.Finish(v.Mem(), k, boot.Params{Cmdline: cmdline, Initrd: initrd}); err != nil {
		return boot.CPUState{}, err
	}
	if err := boot.WriteMPTable(v.Mem(), cfg.CPUs, layout.pciIRQs); err != nil {
		return boot.CPUState{}, err
	}
	return boot.SetupLongMode(v.Mem(), k.Entry)
}

// runVCPU is the thread of vCPU c: it runs the guest until the machine
// stops, handling exits and pausing when asked.
func (m *Machine) runVCPU(c *kvmapi.VCPU) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	c.BindThread()
	defer m.vcpuDone()
	for {
		// Clear immediate_exit before looking at the requests, so a
		// request made after the look still stops the next KVM_RUN.
		c.ClearImmediateExit()
		if r := m.req.Load(); r != 0 && m.checkpoint() {
			return
		}
		err := c.Run()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		m.exits.Add(1)
		if err != nil {
			m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("KVM_RUN on vCPU %d: %w", c.ID(), err))
			return
		}
		if m.handleExit(c) {
			return
		}
	}
}

// checkpoint parks the calling vCPU while a pause is requested. It
// reports true if the vCPU must stop.
func (m *Machine) checkpoint() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.req.Load()&reqPause != 0 && m.req.Load()&reqStop == 0 {
		m.parked++
		m.cond.Broadcast()
		m.cond.Wait()
		m.parked--
	}
	return m.req.Load()&reqStop != 0
}

// vcpuDone records that a vCPU thread ended; the last one releases the
// machine.
func (m *Machine) vcpuDone() {
	m.mu.Lock()
	m.live--
	last := m.live == 0
	m.cond.Broadcast()
	m.mu.Unlock()
	if !last {
		return
	}
	m.end(vmm.Exit{Reason: vmm.ExitStopped}, nil) // no-op if a reason was recorded
	if m.timer != nil {
		m.timer.Stop()
	}
	m.console.Close()
	m.kickMu.Lock()
	m.released = true
	m.vm.Close()
	m.kickMu.Unlock()
	m.consoleErr = m.consoleLog.Close()
	close(m.done)
}

// end records why the guest ended (the first reason wins) and asks every
// vCPU to stop: those in KVM_RUN are kicked out, and those parked by a
// pause are woken, so a paused guest ends too (a Stop, Freeze or the
// backend's Timeout while paused waited for a Resume before).
func (m *Machine) end(e vmm.Exit, err error) {
	m.mu.Lock()
	if !m.ended {
		m.ended, m.exit, m.err = true, e, err
	}
	m.mu.Unlock()
	m.request(reqStop)
	m.mu.Lock()
	m.cond.Broadcast()
	m.mu.Unlock()
}

// request sets req and kicks every vCPU out of KVM_RUN
// (kvmapi.VCPU.Kick).
func (m *Machine) request(req uint32) {
	m.req.Or(req)
	m.kickMu.Lock()
	defer m.kickMu.Unlock()
	if m.released {
		return
	}
	for _, c := range m.vm.VCPUs() {
		c.Kick()
	}
}

// handleExit handles one exit of vCPU c and reports true if the vCPU
// must stop. Port I/O and MMIO go to the buses; no device logic lives
// here.
func (m *Machine) handleExit(c *kvmapi.VCPU) bool {
	switch reason := c.ExitReason(); reason {
	case kvmapi.ExitIO:
		m.ioExits.Add(1)
		e, err := c.IO()
		if err != nil {
			m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: %w", c.ID(), err))
			return true
		}
		for i := range e.Count {
			p := e.Data[i*e.Size : (i+1)*e.Size]
			if e.Out {
				m.pio.Write(uint64(e.Port), p)
			} else {
				m.pio.Read(uint64(e.Port), p)
			}
		}
		return m.req.Load()&reqStop != 0
	case kvmapi.ExitMMIO:
		m.mmioExits.Add(1)
		e := c.MMIO()
		if e.Write {
			m.mmio.Write(e.Addr, e.Data)
		} else {
			m.mmio.Read(e.Addr, e.Data)
		}
		return m.req.Load()&reqStop != 0
	case kvmapi.ExitIntr:
		return false
	case kvmapi.ExitHLT:
		m.end(vmm.Exit{Reason: vmm.ExitHalt}, nil)
	case kvmapi.ExitShutdown:
		m.end(vmm.Exit{Reason: vmm.ExitTripleFault}, nil)
	case kvmapi.ExitSystemEvent:
		switch c.SystemEvent() {
		case kvmapi.SystemEventShutdown:
			m.end(vmm.Exit{Reason: vmm.ExitPoweroff}, nil)
		case kvmapi.SystemEventReset:
			m.end(vmm.Exit{Reason: vmm.ExitReset}, nil)
		default:
			m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: guest crash system event", c.ID()))
		}
	case kvmapi.ExitInternalError:
		m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: %s", c.ID(), kvmapi.InternalError(c.ExitData(), rip(c))))
	case kvmapi.ExitFailEntry:
		m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: VM entry failed, hardware reason %#x", c.ID(), c.FailEntryReason()))
	default:
		m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: unexpected KVM exit %s", c.ID(), kvmapi.ExitName(reason)))
	}
	return true
}

// rip returns vCPU c's instruction pointer, 0 if it cannot be read.
func rip(c *kvmapi.VCPU) uint64 {
	r, err := c.Regs()
	if err != nil {
		return 0
	}
	return r.RIP
}

// Bulk returns the bulk port: each Read returns one descriptor chain the
// guest made available on port 1's transmit queue (use a buffer of at
// least virtio.MaxChainBytes to keep deliveries whole), io.EOF once the
// guest is gone; Write queues bytes for port 1's receive queue.
func (m *Machine) Bulk() io.ReadWriter { return m.console.Bulk() }

// Console returns the virtio console, for its delivery timestamps and
// counters.
func (m *Machine) Console() *virtio.Console { return m.console }

// Pause stops every vCPU and returns once none is running guest code.
func (m *Machine) Pause() error {
	m.mu.Lock()
	if m.ended {
		m.mu.Unlock()
		return errors.New("native backend: pause: the guest has ended")
	}
	m.mu.Unlock()
	m.request(reqPause)
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.parked < m.live && !m.ended {
		m.cond.Wait()
	}
	if m.ended {
		return errors.New("native backend: pause: the guest ended")
	}
	return nil
}

// Resume lets paused vCPUs run again.
func (m *Machine) Resume() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.req.And(^uint32(reqPause))
	m.cond.Broadcast()
	return nil
}

// The native machine stops its vCPUs through the kill flag.
var _ vmm.Freezer = (*Machine)(nil)

// Freeze stops every vCPU for good: the stop request is set and each
// vCPU is kicked out of KVM_RUN (immediate_exit), and Freeze returns once
// no vCPU thread is left running guest code. Stop then waits for the VM's
// resources to be released.
func (m *Machine) Freeze() error {
	m.end(vmm.Exit{Reason: vmm.ExitStopped}, nil)
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.live > 0 {
		m.cond.Wait()
	}
	return nil
}

// Stop ends the guest and returns once every vCPU thread has ended and
// the VM's resources are released.
func (m *Machine) Stop() error {
	m.end(vmm.Exit{Reason: vmm.ExitStopped}, nil)
	<-m.done
	return nil
}

// Wait blocks until the guest has ended and says how. The error is set
// when the VMM, not the guest, failed, or KVM could not run the guest
// (an emulation failure, a failed VM entry).
func (m *Machine) Wait() (vmm.Exit, error) {
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit.WithConsole(m.consoleLog, m.consoleErr), m.err
}

// Info describes the machine for trace metadata.
func (m *Machine) Info() map[string]string {
	out := make(map[string]string, len(m.info))
	for k, v := range m.info {
		out[k] = v
	}
	return out
}

// Stats are the machine's exit counters.
type Stats struct {
	Exits     uint64 // every return from KVM_RUN but signals
	IOExits   uint64
	MMIOExits uint64
}

// Stats returns the exit counters.
func (m *Machine) Stats() Stats {
	return Stats{Exits: m.exits.Load(), IOExits: m.ioExits.Load(), MMIOExits: m.mmioExits.Load()}
}
