//go:build linux && amd64

package kvm

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
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
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/boot"
	"github.com/ktstr/ktstr/vmm/pci"
	"github.com/ktstr/ktstr/vmm/serial"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// Interrupt lines and PCI placement of the devices.
const (
	consoleSlot = 1
	consoleGSI  = 5 // ISA IRQ 5, IOAPIC pin 5, edge-triggered
	i8042Status = 0x64
	i8042Reset  = 0xfe
	cmosIndex   = 0x70
	cmosData    = 0x71
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
}

// Name returns "native".
func (*Backend) Name() string { return "native" }

var _ vmm.Backend = (*Backend)(nil)

// Machine is a guest running under the native VMM.
type Machine struct {
	vm      *vm
	console *virtio.Console
	uart    *serial.UART
	logFile *os.File

	// kickMu orders kicks (which write each vCPU's kvm_run page) before
	// the release of those pages.
	kickMu   sync.Mutex
	released bool

	busMu sync.Mutex // serialises the PCI bus and the CMOS index
	bus   *pci.Bus
	cmos  uint8

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
	v, err := newVM(b.device(), cfg.MemMiB)
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	m := &Machine{vm: v, bus: pci.NewBus(), done: make(chan struct{}), info: map[string]string{}}
	m.cond = sync.NewCond(&m.mu)
	defer func() {
		if err != nil {
			if m.console != nil {
				m.console.Close()
			}
			v.close()
			if m.logFile != nil {
				m.logFile.Close()
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := v.createIRQChip(); err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	if err := m.buildDevices(cfg, b.QueueSize); err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	st, err := loadGuest(v, kernel, initrd, cfg, b.UnpackBzImage)
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	base, err := v.supportedCPUID()
	if err != nil {
		return nil, fmt.Errorf("native backend: %w", err)
	}
	for i := range cfg.CPUs {
		c, err := v.newVCPU(i)
		if err != nil {
			return nil, fmt.Errorf("native backend: %w", err)
		}
		var s *boot.CPUState
		if i == 0 {
			s = &st
		}
		if err := c.setup(base, s, v.irqchip); err != nil {
			return nil, fmt.Errorf("native backend: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.info["accel"] = "kvm"
	m.info["vmm"] = "ktstr-native"
	m.info["transport"] = "virtio-pci-legacy"
	m.info["irqchip"] = strconv.FormatBool(v.irqchip)
	m.info["irqfd"] = strconv.FormatBool(len(v.irqfds) > 0)
	m.info["queue_size"] = strconv.Itoa(int(b.queueSize()))
	m.start = time.Now()
	m.live = len(v.vcpus)
	for _, c := range v.vcpus {
		go m.runVCPU(c)
	}
	if b.Timeout > 0 {
		m.timer = time.AfterFunc(b.Timeout, func() { m.end(vmm.Exit{Reason: vmm.ExitTimeout}, nil) })
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

// buildDevices creates the console log, the UART and the virtio console
// on the PCI bus.
func (m *Machine) buildDevices(cfg vmm.Config, queueSize uint16) error {
	var out io.Writer = io.Discard
	if cfg.ConsoleLog != "" {
		f, err := os.Create(cfg.ConsoleLog)
		if err != nil {
			return fmt.Errorf("creating the console log: %w", err)
		}
		m.logFile, out = f, f
	}
	uartIRQ, err := m.vm.interruptFunc(serial.COM1IRQ)
	if err != nil {
		return err
	}
	m.uart = serial.New(&powerWatch{w: out, m: m}, uartIRQ)
	consoleIRQ, err := m.vm.interruptFunc(consoleGSI)
	if err != nil {
		return err
	}
	m.console, err = virtio.NewConsole(virtio.ConsoleConfig{
		Mem:       m.vm.mem,
		QueueSize: queueSize,
		Output:    out,
		Interrupt: consoleIRQ,
		Stamp:     m.exits.Load,
	})
	if err != nil {
		return err
	}
	return m.bus.Add(consoleSlot, pci.Header{
		VendorID:          virtio.PCIVendor,
		DeviceID:          virtio.PCIDeviceConsole,
		SubsystemVendorID: virtio.PCIVendor,
		SubsystemID:       virtio.VirtioIDConsole,
		Class:             virtio.PCIClassSimpleComm,
		InterruptPin:      1,
		InterruptLine:     consoleGSI,
		IOBARSize:         [6]uint32{virtio.LegacyBARSize},
	}, pciFunc{m.console})
}

// pciFunc adapts the console's BAR 0 to pci.Device.
type pciFunc struct{ c *virtio.Console }

func (f pciFunc) IORead(bar int, off uint64, p []byte) {
	if bar == 0 {
		f.c.IORead(off, p)
		return
	}
	for i := range p {
		p[i] = 0xff
	}
}

func (f pciFunc) IOWrite(bar int, off uint64, p []byte) {
	if bar == 0 {
		f.c.IOWrite(off, p)
	}
}

// loadGuest loads the kernel and initrd and writes the boot structures.
func loadGuest(v *vm, kernel, initrd []byte, cfg vmm.Config, unpack bool) (boot.CPUState, error) {
	load := boot.LoadKernel
	if unpack && !bytes.HasPrefix(kernel, []byte(elf.ELFMAG)) {
		load = boot.LoadBzImageUnpacked
	}
	k, err := load(v.mem, kernel)
	if err != nil {
		return boot.CPUState{}, fmt.Errorf("loading %s: %w", cfg.Kernel, err)
	}
	if err := boot.Finish(v.mem, k, boot.Params{Cmdline: cfg.Cmdline, Initrd: initrd}); err != nil {
		return boot.CPUState{}, err
	}
	if err := boot.WriteMPTable(v.mem, cfg.CPUs, []boot.PCIInterrupt{{Slot: consoleSlot, Pin: 1, IOAPICPin: consoleGSI}}); err != nil {
		return boot.CPUState{}, err
	}
	return boot.SetupLongMode(v.mem, k.Entry)
}

// runVCPU is the thread of vCPU c: it runs the guest until the machine
// stops, handling exits and pausing when asked.
func (m *Machine) runVCPU(c *vcpu) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	c.tid.Store(int32(unix.Gettid()))
	defer m.vcpuDone()
	word := (*uint32)(unsafe.Pointer(&c.run[0]))
	for {
		// Clear immediate_exit before looking at the requests, so a
		// request made after the look still stops the next KVM_RUN.
		atomic.StoreUint32(word, 0)
		if r := m.req.Load(); r != 0 && m.checkpoint() {
			return
		}
		_, err := ioctl(c.fd, kvmRun, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		m.exits.Add(1)
		if err != nil {
			m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("KVM_RUN on vCPU %d: %w", c.id, err))
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
	m.vm.close()
	m.kickMu.Unlock()
	if m.logFile != nil {
		m.logFile.Close()
	}
	close(m.done)
}

// end records why the guest ended (the first reason wins) and asks every
// vCPU to stop.
func (m *Machine) end(e vmm.Exit, err error) {
	m.mu.Lock()
	if !m.ended {
		m.ended, m.exit, m.err = true, e, err
	}
	m.mu.Unlock()
	m.request(reqStop)
}

// request sets req and kicks every vCPU out of KVM_RUN: immediate_exit
// stops a vCPU about to enter, a signal interrupts one inside (Go's
// runtime ignores an unexpected SIGURG).
func (m *Machine) request(req uint32) {
	m.req.Or(req)
	m.kickMu.Lock()
	defer m.kickMu.Unlock()
	if m.released {
		return
	}
	pid := unix.Getpid()
	for _, c := range m.vm.vcpus {
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&c.run[0])), 1<<(8*runImmediateExit))
		if tid := c.tid.Load(); tid != 0 {
			unix.Tgkill(pid, int(tid), unix.SIGURG) // ESRCH: the thread has ended
		}
	}
}

// handleExit handles one exit of vCPU c and reports true if the vCPU
// must stop.
func (m *Machine) handleExit(c *vcpu) bool {
	run := c.run
	reason := binary.LittleEndian.Uint32(run[runExitReason:])
	u := run[runExit:]
	switch reason {
	case exitIO:
		m.ioExits.Add(1)
		out := u[0] == ioDirectionOut
		size := int(u[1])
		port := binary.LittleEndian.Uint16(u[2:])
		count := int(binary.LittleEndian.Uint32(u[4:]))
		off := binary.LittleEndian.Uint64(u[8:])
		if size != 1 && size != 2 && size != 4 || off > uint64(len(run)) || uint64(size*count) > uint64(len(run))-off {
			m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: malformed I/O exit (port %#x, size %d, count %d)", c.id, port, size, count))
			return true
		}
		data := run[off : off+uint64(size*count)]
		for i := range count {
			p := data[i*size : (i+1)*size]
			if out {
				m.portWrite(port, p)
			} else {
				m.portRead(port, p)
			}
		}
		return m.req.Load()&reqStop != 0
	case exitMMIO:
		m.mmioExits.Add(1)
		n := min(binary.LittleEndian.Uint32(u[16:]), 8)
		if u[20] == 0 { // a read of memory nothing backs: all ones
			for i := range n {
				u[8+i] = 0xff
			}
		}
		return false
	case exitIntr:
		return false
	case exitHLT:
		m.end(vmm.Exit{Reason: vmm.ExitHalt}, nil)
	case exitShutdown:
		m.end(vmm.Exit{Reason: vmm.ExitTripleFault}, nil)
	case exitSystemEvent:
		switch binary.LittleEndian.Uint32(u[0:]) {
		case systemEventShutdown:
			m.end(vmm.Exit{Reason: vmm.ExitPoweroff}, nil)
		case systemEventReset:
			m.end(vmm.Exit{Reason: vmm.ExitReset}, nil)
		default:
			m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: guest crash system event", c.id))
		}
	case exitInternalError:
		m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: %s", c.id, internalError(u, m.rip(c))))
	case exitFailEntry:
		m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: VM entry failed, hardware reason %#x", c.id, binary.LittleEndian.Uint64(u[0:])))
	default:
		m.end(vmm.Exit{Reason: vmm.ExitCrash}, fmt.Errorf("vCPU %d: unexpected KVM exit %s", c.id, exitName(reason)))
	}
	return true
}

// internalError describes a KVM_EXIT_INTERNAL_ERROR from the exit's
// union u (struct kvm_run's internal / emulation_failure). For an
// emulation failure KVM (Linux 5.14 and later) may add the bytes of the
// instruction it could not emulate; they are shown, so the instruction
// can be named without a disassembler at hand.
func internalError(u []byte, rip uint64) string {
	le := binary.LittleEndian
	sub := le.Uint32(u[0:])
	if sub != internalErrorEmulation {
		return fmt.Sprintf("KVM internal error, suberror %d at RIP %#x", sub, rip)
	}
	s := fmt.Sprintf("KVM emulation failure (an instruction the host's KVM cannot emulate), suberror %d at RIP %#x", sub, rip)
	ndata, flags := le.Uint32(u[4:]), le.Uint64(u[8:])
	if n := int(u[16]); ndata >= 2 && flags&emulationFlagInstructionBytes != 0 && n >= 1 && n <= 15 {
		s += fmt.Sprintf(", instruction bytes % x", u[17:17+n])
	}
	return s
}

// rip returns vCPU c's instruction pointer, 0 if it cannot be read.
func (m *Machine) rip(c *vcpu) uint64 {
	var r Regs
	if ioctlPtr(c.fd, kvmGetRegs, unsafe.Pointer(&r)) != nil {
		return 0
	}
	return r.RIP
}

// portRead handles a guest IN instruction.
func (m *Machine) portRead(port uint16, p []byte) {
	switch {
	case port >= serial.COM1Base && port < serial.COM1Base+serial.NumPorts:
		for i := range p {
			p[i] = m.uart.Read(port - serial.COM1Base + uint16(i))
		}
		return
	case port == cmosData:
		m.busMu.Lock()
		idx := m.cmos
		m.busMu.Unlock()
		for i := range p {
			p[i] = cmosRead(idx, time.Now().UTC())
		}
		return
	}
	m.busMu.Lock()
	ok := m.bus.PortRead(port, p)
	m.busMu.Unlock()
	if !ok {
		for i := range p {
			p[i] = 0xff // nothing there (the i8042 reads as absent)
		}
	}
}

// portWrite handles a guest OUT instruction.
func (m *Machine) portWrite(port uint16, p []byte) {
	switch {
	case port >= serial.COM1Base && port < serial.COM1Base+serial.NumPorts:
		m.uart.Write(port-serial.COM1Base, p[0])
		return
	case port == i8042Status && p[0] == i8042Reset:
		m.end(vmm.Exit{Reason: vmm.ExitReset}, nil)
		return
	case port == cmosIndex:
		m.busMu.Lock()
		m.cmos = p[0] & 0x7f
		m.busMu.Unlock()
		return
	}
	m.busMu.Lock()
	m.bus.PortWrite(port, p)
	m.busMu.Unlock()
}

// cmosRead returns CMOS register idx: the RTC holds now in BCD, the
// update-in-progress flag is never set, every other byte is 0.
func cmosRead(idx uint8, now time.Time) byte {
	bcd := func(v int) byte { return byte(v/10<<4 | v%10) }
	switch idx {
	case 0x00:
		return bcd(now.Second())
	case 0x02:
		return bcd(now.Minute())
	case 0x04:
		return bcd(now.Hour())
	case 0x06:
		return bcd(int(now.Weekday()) + 1)
	case 0x07:
		return bcd(now.Day())
	case 0x08:
		return bcd(int(now.Month()))
	case 0x09:
		return bcd(now.Year() % 100)
	case 0x32:
		return bcd(now.Year() / 100)
	case 0x0a:
		return 0x26 // 32.768 kHz base, 1024 Hz rate, no update in progress
	case 0x0b:
		return 0x02 // 24-hour, BCD
	case 0x0d:
		return 0x80 // the RTC's power is good
	}
	return 0
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

// vcpuRegisters is the JSON form of one vCPU's registers.
type vcpuRegisters struct {
	CPU   int   `json:"cpu"`
	Regs  Regs  `json:"regs"`
	Sregs Sregs `json:"sregs"`
}

// Registers returns the registers of every vCPU as a JSON array; the
// machine must be paused.
func (m *Machine) Registers() (json.RawMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended || m.req.Load()&reqPause == 0 || m.parked < m.live {
		return nil, errors.New("native backend: registers: pause the guest first")
	}
	var out []vcpuRegisters
	for _, c := range m.vm.vcpus {
		r := vcpuRegisters{CPU: c.id}
		if err := ioctlPtr(c.fd, kvmGetRegs, unsafe.Pointer(&r.Regs)); err != nil {
			return nil, fmt.Errorf("native backend: KVM_GET_REGS on vCPU %d: %w", c.id, err)
		}
		if err := ioctlPtr(c.fd, kvmGetSregs, unsafe.Pointer(&r.Sregs)); err != nil {
			return nil, fmt.Errorf("native backend: KVM_GET_SREGS on vCPU %d: %w", c.id, err)
		}
		out = append(out, r)
	}
	return json.Marshal(out)
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
	return m.exit, m.err
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

// Lines Linux prints on the serial console right before it powers off
// or restarts, whatever the log level ("reboot: " is the pr_fmt of
// kernel/reboot.c).
const (
	linePowerDown  = "reboot: Power down"
	lineRestarting = "reboot: Restarting system"
	maxWatchedLine = 256
)

// powerWatch passes serial output through and ends the machine when the
// guest kernel announces a power-off. The machine has no ACPI, so a
// powered-off Linux guest just halts with interrupts disabled, which the
// in-kernel irqchip never reports; the announcement is the only sign. A
// guest that prints the line itself only ends its own run.
type powerWatch struct {
	w    io.Writer
	m    *Machine
	line []byte
}

func (p *powerWatch) Write(b []byte) (int, error) {
	for _, c := range b {
		switch {
		case c == '\n':
			l := strings.TrimRight(string(p.line), "\r")
			if strings.HasSuffix(l, linePowerDown) {
				p.m.end(vmm.Exit{Reason: vmm.ExitPoweroff}, nil)
			} else if strings.HasSuffix(l, lineRestarting) {
				p.m.end(vmm.Exit{Reason: vmm.ExitReset}, nil)
			}
			p.line = p.line[:0]
		case len(p.line) < maxWatchedLine:
			p.line = append(p.line, c)
		}
	}
	return p.w.Write(b)
}
