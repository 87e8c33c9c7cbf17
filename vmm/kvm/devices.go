//go:build linux && amd64

package kvm

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/boot"
	"github.com/ktstr/ktstr/vmm/bus"
	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/legacy"
	"github.com/ktstr/ktstr/vmm/pci"
	"github.com/ktstr/ktstr/vmm/virtio"
	"github.com/ktstr/ktstr/vmm/virtio/legacypci"
	"github.com/ktstr/ktstr/vmm/virtio/mmio"
)

// This file is the machine's device map: which devices exist, where
// they sit and how they interrupt. A new legacy device is a file in
// vmm/legacy and one entry in newDeviceMap's table; a new virtio
// transport is a package under vmm/virtio, a Transport constant listed
// by Transports, and one case in attachConsole.

// Transports the virtio console can sit behind (Backend.Transport).
const (
	// TransportPCI is the legacy virtio-pci function at PCI slot
	// consoleSlot, which the guest finds by scanning PCI; the default.
	TransportPCI = "pci"
	// TransportMMIO is a virtio-mmio (version 2) window at mmioBase,
	// announced to the guest on its command line (mmio.Cmdline).
	TransportMMIO = "mmio"
)

// Transports returns the transports Backend.Transport may name, the
// default first.
func Transports() []string { return []string{TransportPCI, TransportMMIO} }

// KnownTransport reports whether name is one of Transports.
func KnownTransport(name string) bool { return slices.Contains(Transports(), name) }

// Placement of the console, whichever its transport.
const (
	consoleSlot = 1          // PCI slot of the legacy virtio-pci function
	consoleGSI  = 5          // ISA IRQ 5, IOAPIC pin 5, edge-triggered
	mmioBase    = 0xd0000000 // the virtio-mmio window, in the hole below 4 GiB (boot.LowMemMax..4 GiB)
)

// layout is what the devices add to the boot: command-line options,
// PCI interrupt routes for the MP table, trace metadata.
type layout struct {
	cmdline string
	pciIRQs []boot.PCIInterrupt
	info    map[string]string
}

// deviceEnv is what the device map needs from the machine: guest
// memory, a way to raise an interrupt line, where console output goes,
// and what a reset request does.
type deviceEnv struct {
	mem       *guestmem.Memory
	interrupt func(gsi uint32) (func(), error)
	serial    io.Writer // the UART's output (the console log)
	hvc       io.Writer // the virtio console's port 0 output
	reset     func()    // the i8042 pulsed the reset line
	stamp     func() uint64
}

// deviceMap is the machine's devices: the two buses the run loop hands
// exits to, the console on one of them, and what they add to the boot.
type deviceMap struct {
	pio, mmio *bus.Bus
	console   *virtio.Console
	layout    layout
}

// buildDevices creates the console log and the device map, with the
// virtio console behind transport.
func (m *Machine) buildDevices(cfg vmm.Config, transport string, queueSize uint16) (layout, error) {
	log, err := cfg.OpenConsoleLog()
	if err != nil {
		return layout{}, err
	}
	m.consoleLog = log
	out := io.Writer(log) // a nil log discards
	d, err := newDeviceMap(deviceEnv{
		mem:       m.vm.Mem(),
		interrupt: m.vm.InterruptFunc,
		serial:    &powerWatch{w: out, m: m},
		hvc:       out,
		reset:     func() { m.end(vmm.Exit{Reason: vmm.ExitReset}, nil) },
		stamp:     m.exits.Load,
	}, transport, queueSize)
	if err != nil {
		return layout{}, err
	}
	m.pio, m.mmio, m.console = d.pio, d.mmio, d.console
	return d.layout, nil
}

// newDeviceMap registers the legacy devices on the port-I/O bus, puts
// the PCI bus behind every port they leave, and attaches the console.
func newDeviceMap(env deviceEnv, transport string, queueSize uint16) (*deviceMap, error) {
	d := &deviceMap{pio: bus.New("pio"), mmio: bus.New("mmio")}
	pciBus := pci.NewBus()
	// The PCI bus decodes the ports no legacy device claims: its
	// configuration ports and the I/O BARs, which the guest may move.
	d.pio.SetDefault(pciBus)

	uartIRQ, err := env.interrupt(legacy.COM1IRQ)
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		base, size uint64
		name       string
		dev        bus.Device
	}{
		{legacy.COM1Base, legacy.UARTPorts, "uart (ttyS0)", legacy.New(env.serial, uartIRQ)},
		{legacy.CMOSBase, legacy.CMOSPorts, "cmos", legacy.NewCMOS(nil)},
		{legacy.I8042CommandPort, legacy.I8042Ports, "i8042", legacy.NewI8042(env.reset)},
	} {
		if err := d.pio.Register(l.base, l.size, l.name, l.dev); err != nil {
			return nil, err
		}
	}

	d.console, err = virtio.NewConsole(virtio.ConsoleConfig{QueueSize: queueSize, Output: env.hvc, Stamp: env.stamp})
	if err != nil {
		return nil, err
	}
	if d.layout, err = d.attachConsole(env, transport, pciBus); err != nil {
		return nil, err
	}
	return d, nil
}

// attachConsole puts the console behind transport.
func (d *deviceMap) attachConsole(env deviceEnv, transport string, pciBus *pci.Bus) (layout, error) {
	irq, err := env.interrupt(consoleGSI)
	if err != nil {
		return layout{}, err
	}
	switch transport {
	case TransportMMIO:
		t, err := mmio.New(d.console, env.mem, irq)
		if err != nil {
			return layout{}, err
		}
		if err := d.mmio.Register(mmioBase, mmio.WindowSize, "virtio-mmio console", t); err != nil {
			return layout{}, err
		}
		announce := mmio.Cmdline(mmioBase, consoleGSI)
		return layout{
			cmdline: announce,
			info:    map[string]string{"transport": "virtio-mmio", "virtio_mmio": strings.TrimPrefix(announce, "virtio_mmio.device=")},
		}, nil
	case TransportPCI:
		t, err := legacypci.New(d.console, env.mem, irq)
		if err != nil {
			return layout{}, err
		}
		if err := pciBus.Add(consoleSlot, t.Header(consoleGSI), t); err != nil {
			return layout{}, err
		}
		return layout{
			pciIRQs: []boot.PCIInterrupt{{Slot: consoleSlot, Pin: 1, IOAPICPin: consoleGSI}},
			info:    map[string]string{"transport": "virtio-pci-legacy"},
		}, nil
	}
	return layout{}, fmt.Errorf("transport %q: want %s", transport, strings.Join(Transports(), " or "))
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
