// Package pci is the PCI bus of the native KVM backend: configuration
// mechanism #1 (I/O ports 0xCF8 and 0xCFC–0xCFF), a host bridge, and
// the routing of I/O BAR accesses to device functions. On the port-I/O
// bus (vmm/bus) it is the default decoder: it sees every port no legacy
// device claims, as the BARs may be moved by the guest.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits in front of the tap: with the legacy virtio-pci
// transport (vmm/virtio/legacypci) the guest finds the virtio console,
// and so the bulk port, through it. Configuration writes are
// the guest's to make; only the writable bits of the few writable
// registers take effect, so a guest cannot move a BAR onto the
// configuration ports or change a device's identity.
package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Configuration mechanism #1 ports.
const (
	ConfigAddressPort = 0xcf8
	ConfigDataPort    = 0xcfc
)

// Configuration space offsets.
const (
	RegVendorID      = 0x00
	RegCommand       = 0x04
	RegRevisionClass = 0x08
	RegHeaderType    = 0x0e
	RegBAR0          = 0x10
	RegSubsystem     = 0x2c
	RegInterruptLine = 0x3c
	RegInterruptPin  = 0x3d
)

// Command register bits the guest may change.
const (
	CommandIO       = 1 << 0
	CommandMemory   = 1 << 1
	CommandMaster   = 1 << 2
	CommandIntxMask = 1 << 10
	commandWritable = CommandIO | CommandMemory | CommandMaster | CommandIntxMask
)

const (
	maxSlots   = 32
	numBARs    = 6
	configSize = 256
	// ioBase is where BARs are first placed, as firmware would, above
	// the legacy ISA range.
	ioBase = 0xc000
	// ioLimit ends the I/O space BARs may be moved to.
	ioLimit = 0x10000
)

// Device handles the accesses to its I/O BARs. Offsets are relative to
// the BAR; len(p) is 1, 2 or 4.
type Device interface {
	IORead(bar int, off uint64, p []byte)
	IOWrite(bar int, off uint64, p []byte)
}

// Header is the identity of a function and the sizes of its I/O BARs.
type Header struct {
	VendorID, DeviceID             uint16
	SubsystemVendorID, SubsystemID uint16
	Revision                       uint8
	Class                          uint32 // class << 16 | subclass << 8 | prog-if
	InterruptPin                   uint8  // 1 = INTA, 0 = none
	InterruptLine                  uint8  // the ISA IRQ the firmware routed it to
	IOBARSize                      [numBARs]uint32
}

type function struct {
	cfg      [configSize]byte
	barSize  [numBARs]uint32
	dev      Device
	readOnly bool // the host bridge: no BARs, nothing writable but the command register
}

// Bus is PCI bus 0 behind configuration mechanism #1. Add devices before
// the vCPUs run; the port accesses are safe for concurrent use (one at a
// time reaches a device).
type Bus struct {
	mu     sync.Mutex
	addr   uint32
	slots  [maxSlots]*function
	nextIO uint32
}

// NewBus returns a bus holding a host bridge at 00:00.0.
func NewBus() *Bus {
	b := &Bus{nextIO: ioBase}
	hb := &function{readOnly: true}
	binary.LittleEndian.PutUint16(hb.cfg[RegVendorID:], 0x8086)
	binary.LittleEndian.PutUint16(hb.cfg[RegVendorID+2:], 0x1237) // 440FX host bridge
	binary.LittleEndian.PutUint32(hb.cfg[RegRevisionClass:], 0x06000000)
	b.slots[0] = hb
	return b
}

// Add places a single-function device in slot, assigns its I/O BARs
// addresses and enables I/O decoding, as firmware would.
func (b *Bus) Add(slot int, h Header, d Device) error {
	if slot <= 0 || slot >= maxSlots || b.slots[slot] != nil {
		return fmt.Errorf("pci slot %d is taken or outside 1..%d", slot, maxSlots-1)
	}
	f := &function{dev: d}
	binary.LittleEndian.PutUint16(f.cfg[RegVendorID:], h.VendorID)
	binary.LittleEndian.PutUint16(f.cfg[RegVendorID+2:], h.DeviceID)
	binary.LittleEndian.PutUint32(f.cfg[RegRevisionClass:], h.Class<<8|uint32(h.Revision))
	binary.LittleEndian.PutUint16(f.cfg[RegSubsystem:], h.SubsystemVendorID)
	binary.LittleEndian.PutUint16(f.cfg[RegSubsystem+2:], h.SubsystemID)
	f.cfg[RegInterruptLine] = h.InterruptLine
	f.cfg[RegInterruptPin] = h.InterruptPin
	for i, size := range h.IOBARSize {
		if size == 0 {
			continue
		}
		if size < 4 || size&(size-1) != 0 || size > 256 {
			return fmt.Errorf("pci slot %d: I/O BAR %d size %d is not a power of two in 4..256", slot, i, size)
		}
		base := (b.nextIO + size - 1) &^ (size - 1)
		if base+size > ioLimit {
			return fmt.Errorf("pci slot %d: no I/O space left for BAR %d", slot, i)
		}
		b.nextIO = base + size
		f.barSize[i] = size
		binary.LittleEndian.PutUint32(f.cfg[RegBAR0+4*i:], base|1)
	}
	binary.LittleEndian.PutUint16(f.cfg[RegCommand:], CommandIO)
	b.slots[slot] = f
	return nil
}

// BAR returns the I/O address of BAR bar of the device in slot, and
// whether the device decodes it now.
func (b *Bus) BAR(slot, bar int) (uint16, bool) {
	if slot < 0 || slot >= maxSlots || bar < 0 || bar >= numBARs || b.slots[slot] == nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.slots[slot]
	base, ok := f.ioBAR(bar)
	return uint16(base), ok
}

func (f *function) ioBAR(bar int) (uint32, bool) {
	if f.barSize[bar] == 0 || binary.LittleEndian.Uint16(f.cfg[RegCommand:])&CommandIO == 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(f.cfg[RegBAR0+4*bar:]) &^ 3, true
}

// target decodes the configuration address register for a data-port
// access at port: the function and the register offset, nil if none.
func (b *Bus) target(port uint16) (*function, int) {
	if b.addr&(1<<31) == 0 {
		return nil, 0
	}
	bus := (b.addr >> 16) & 0xff
	slot := (b.addr >> 11) & 0x1f
	fn := (b.addr >> 8) & 0x7
	if bus != 0 || fn != 0 {
		return nil, 0
	}
	return b.slots[slot], int(b.addr&0xfc) + int(port-ConfigDataPort)
}

// Read answers a port read as the port-I/O bus's default decoder (the
// PCI bus sees every port no legacy device claims, bus.Bus.SetDefault):
// a port nothing on the PCI bus claims reads as all ones.
func (b *Bus) Read(port uint64, p []byte) {
	if port > 0xffff || !b.PortRead(uint16(port), p) {
		for i := range p {
			p[i] = 0xff
		}
	}
}

// Write answers a port write as the port-I/O bus's default decoder; a
// port nothing claims drops it.
func (b *Bus) Write(port uint64, p []byte) {
	if port <= 0xffff {
		b.PortWrite(uint16(port), p)
	}
}

// PortRead handles a guest read at an I/O port. It reports false if no
// device of the bus claims the port.
func (b *Bus) PortRead(port uint16, p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case port >= ConfigAddressPort && port < ConfigAddressPort+4:
		var a [4]byte
		binary.LittleEndian.PutUint32(a[:], b.addr)
		off := int(port - ConfigAddressPort)
		for i := range p {
			p[i] = 0
			if off+i < 4 {
				p[i] = a[off+i]
			}
		}
		return true
	case port >= ConfigDataPort && port < ConfigDataPort+4:
		f, off := b.target(port)
		for i := range p {
			p[i] = 0xff
			if f != nil && off+i < configSize {
				p[i] = f.cfg[off+i]
			}
		}
		return true
	}
	f, bar, off := b.decode(port, len(p))
	if f == nil {
		return false
	}
	f.dev.IORead(bar, off, p)
	return true
}

// PortWrite handles a guest write at an I/O port. It reports false if
// no device of the bus claims the port.
func (b *Bus) PortWrite(port uint16, p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case port == ConfigAddressPort && len(p) == 4:
		b.addr = binary.LittleEndian.Uint32(p) & 0x80fffffc
		return true
	case port >= ConfigAddressPort && port < ConfigAddressPort+4:
		return true // partial writes of the address register do nothing
	case port >= ConfigDataPort && port < ConfigDataPort+4:
		f, off := b.target(port)
		if f != nil {
			for i, v := range p {
				if off+i < configSize {
					f.writeConfig(off+i, v)
				}
			}
		}
		return true
	}
	f, bar, off := b.decode(port, len(p))
	if f == nil {
		return false
	}
	f.dev.IOWrite(bar, off, p)
	return true
}

// decode finds the I/O BAR holding the n bytes at port.
func (b *Bus) decode(port uint16, n int) (*function, int, uint64) {
	for _, f := range b.slots {
		if f == nil || f.dev == nil {
			continue
		}
		for bar := range numBARs {
			base, ok := f.ioBAR(bar)
			if !ok {
				continue
			}
			p := uint32(port)
			if p >= base && p+uint32(n) <= base+f.barSize[bar] {
				return f, bar, uint64(p - base)
			}
		}
	}
	return nil, 0, 0
}

// writeConfig applies a one-byte configuration write at off, keeping only
// the bits the guest may change.
func (f *function) writeConfig(off int, v byte) {
	switch {
	case off == RegCommand || off == RegCommand+1:
		mask := byte(commandWritable & 0xff)
		if off == RegCommand+1 {
			mask = byte(commandWritable >> 8)
		}
		f.cfg[off] = f.cfg[off]&^mask | v&mask
	case f.readOnly:
	case off >= RegBAR0 && off < RegBAR0+4*numBARs:
		bar := (off - RegBAR0) / 4
		size := f.barSize[bar]
		if size == 0 {
			return
		}
		// Address bits below the size read back as zero, so writing all
		// ones reads back the size mask; bits above 16 are not decoded.
		reg := f.cfg[RegBAR0+4*bar : RegBAR0+4*bar+4]
		reg[off%4] = v
		addr := binary.LittleEndian.Uint32(reg) &^ (size - 1) & 0xffff
		binary.LittleEndian.PutUint32(reg, addr|1)
	case off == RegInterruptLine:
		f.cfg[off] = v
	}
}
