// Package bus routes the native VMM's device accesses by address: one
// Bus for port I/O and one for MMIO, each a set of non-overlapping
// ranges registered with the device that answers them, and a default
// for what no range claims. The vCPU run loop (package kvm) holds no
// device logic: an I/O or MMIO exit becomes one Read or Write here.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits in front of the tap: the guest driver reaches the
// virtio console's transport, whose queue notifications produce the
// bulk port's deliveries, through it. Addresses and widths are the
// guest's to choose; a Bus hands a device only accesses wholly inside
// the range it registered, with the offset from the range's start.
package bus

import (
	"fmt"
	"slices"
)

// Device answers the accesses to the range it was registered at. off is
// the offset from the start of the range and off+len(p) lies inside it;
// len(p) is the access width (1, 2 or 4 for port I/O, 1 to 8 for MMIO).
// Read fills p. A device that the vCPUs share must serialise itself:
// several vCPU threads may call it at once.
type Device interface {
	Read(off uint64, p []byte)
	Write(off uint64, p []byte)
}

// Range is one registered address range.
type Range struct {
	Base, Size uint64
	Name       string // for messages and listings, e.g. "uart" or "virtio-mmio console"
	Device     Device
}

// End returns the address just past the range.
func (r Range) End() uint64 { return r.Base + r.Size }

// Bus is one address space. Register every range and set the default
// before the vCPUs run; after that a Bus is only read and is safe for
// concurrent use.
type Bus struct {
	name   string
	ranges []Range // sorted by Base, non-overlapping
	def    Device
}

// New returns an empty bus named name ("pio", "mmio") for messages.
func New(name string) *Bus { return &Bus{name: name} }

// Register places d at [base, base+size). It fails if the range is empty,
// wraps around, or overlaps one registered before.
func (b *Bus) Register(base, size uint64, name string, d Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("%s bus: %s at %#x+%#x is empty or wraps around", b.name, name, base, size)
	}
	r := Range{Base: base, Size: size, Name: name, Device: d}
	i, _ := slices.BinarySearchFunc(b.ranges, base, func(r Range, a uint64) int {
		switch {
		case r.Base < a:
			return -1
		case r.Base > a:
			return 1
		}
		return 0
	})
	if i > 0 && b.ranges[i-1].End() > base {
		o := b.ranges[i-1]
		return fmt.Errorf("%s bus: %s at %#x-%#x overlaps %s at %#x-%#x", b.name, name, base, r.End()-1, o.Name, o.Base, o.End()-1)
	}
	if i < len(b.ranges) && b.ranges[i].Base < r.End() {
		o := b.ranges[i]
		return fmt.Errorf("%s bus: %s at %#x-%#x overlaps %s at %#x-%#x", b.name, name, base, r.End()-1, o.Name, o.Base, o.End()-1)
	}
	b.ranges = slices.Insert(b.ranges, i, r)
	return nil
}

// SetDefault makes d answer every access no range claims, with the
// absolute address as its offset (for example the PCI bus, which
// decodes the I/O BARs the guest may move). Without a default such
// reads return all ones and writes are dropped, as on an empty bus.
func (b *Bus) SetDefault(d Device) { b.def = d }

// Ranges returns the registered ranges in address order.
func (b *Bus) Ranges() []Range { return slices.Clone(b.ranges) }

// find returns the range holding all n bytes at addr.
func (b *Bus) find(addr uint64, n int) (Range, bool) {
	i, found := slices.BinarySearchFunc(b.ranges, addr, func(r Range, a uint64) int {
		switch {
		case r.End() <= a:
			return -1
		case r.Base > a:
			return 1
		}
		return 0
	})
	if !found {
		return Range{}, false
	}
	r := b.ranges[i]
	if addr+uint64(n) < addr || addr+uint64(n) > r.End() {
		return Range{}, false // straddles the end: nothing decodes it whole
	}
	return r, true
}

// Read handles a guest read of len(p) bytes at addr.
func (b *Bus) Read(addr uint64, p []byte) {
	if r, ok := b.find(addr, len(p)); ok {
		r.Device.Read(addr-r.Base, p)
		return
	}
	if b.def != nil {
		b.def.Read(addr, p)
		return
	}
	for i := range p {
		p[i] = 0xff
	}
}

// Write handles a guest write of p at addr.
func (b *Bus) Write(addr uint64, p []byte) {
	if r, ok := b.find(addr, len(p)); ok {
		r.Device.Write(addr-r.Base, p)
		return
	}
	if b.def != nil {
		b.def.Write(addr, p)
	}
}
