// Package legacypci is the legacy (virtio 0.9.5) virtio-pci transport of
// the native VMM: a PCI function whose I/O BAR 0 holds the legacy
// register file, driving any virtio.Device. It is the transport Linux's
// virtio_pci driver finds by scanning PCI, and the one the native VMM
// uses unless told otherwise (ktstr record --transport pci).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits in front of the tap: the driver's queue notifications
// reach the device through it, and each one on the bulk port's transmit
// queue yields that queue's deliveries. Every register access is the
// guest's: accesses of the wrong width or offset are counted and
// ignored, a queue placed outside guest memory is refused and the
// device reported as needing reset, and nothing the guest writes here
// can reach the device except through the virtio.Device calls.
package legacypci

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/pci"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// Legacy virtio-pci register offsets in I/O BAR 0 (no MSI-X).
const (
	RegHostFeatures  = 0  // u32 RO
	RegGuestFeatures = 4  // u32 RW
	RegQueuePFN      = 8  // u32 RW
	RegQueueSize     = 12 // u16 RO
	RegQueueSelect   = 14 // u16 RW
	RegQueueNotify   = 16 // u16 WO
	RegStatus        = 18 // u8 RW; writing 0 resets the device
	RegISR           = 19 // u8 RO; reading clears it
	RegConfig        = 20 // device-specific configuration
)

// PCI identity of legacy (transitional) virtio devices.
const (
	PCIVendor = 0x1af4
	// MinBARSize is the smallest I/O BAR a device gets: the 20-byte
	// common header and the configuration, rounded up to a power of two,
	// but never under 64 bytes.
	MinBARSize = 64
)

// pciDeviceID and pciClass map virtio device types to their transitional
// PCI device IDs (virtio 1.2 §4.1.2.3) and PCI classes.
func pciDeviceID(typ uint32) (uint16, bool) {
	id, ok := map[uint32]uint16{
		virtio.IDNet: 0x1000, virtio.IDBlock: 0x1001, virtio.IDConsole: 0x1003, virtio.IDRNG: 0x1005,
	}[typ]
	return id, ok
}

func pciClass(typ uint32) uint32 {
	switch typ {
	case virtio.IDNet:
		return 0x020000 // Ethernet controller
	case virtio.IDBlock:
		return 0x010000 // SCSI storage controller
	case virtio.IDConsole:
		return 0x078000 // simple communication controller, other
	}
	return 0xff0000
}

// Stats counts what the transport refused.
type Stats struct {
	BadAccesses int // register accesses that matched no register, or came when they could not apply
}

// Transport is one legacy virtio-pci function driving dev. It is a
// pci.Device; its methods are safe for concurrent use.
type Transport struct {
	mu            sync.Mutex
	dev           virtio.Device
	queues        []*virtio.Queue
	raise         func()
	deviceID      uint16
	barSize       uint32
	guestFeatures uint32
	status        uint8
	queueSel      uint16
	active        bool
	err           error // a guest error of the transport's own (queue placement)
	stats         Stats
	isr           atomic.Uint32
}

var _ pci.Device = (*Transport)(nil)

// New returns the transport of dev over guest memory mem; raise raises
// its interrupt line (an edge), nil for a driver that polls.
func New(dev virtio.Device, mem *guestmem.Memory, raise func()) (*Transport, error) {
	id, ok := pciDeviceID(dev.Type())
	if !ok {
		return nil, fmt.Errorf("legacy virtio-pci: device type %d has no transitional PCI device ID; use the virtio-mmio transport", dev.Type())
	}
	if raise == nil {
		raise = func() {}
	}
	t := &Transport{dev: dev, raise: raise, deviceID: id, barSize: MinBARSize}
	for t.barSize < uint32(RegConfig+dev.ConfigSize()) {
		t.barSize *= 2
	}
	for i, max := range dev.QueueMaxSizes() {
		q, err := virtio.NewQueue(mem, max)
		if err != nil {
			return nil, fmt.Errorf("legacy virtio-pci: queue %d: %w", i, err)
		}
		t.queues = append(t.queues, q)
	}
	return t, nil
}

// Header returns the PCI identity of the function: the transitional
// device ID of the device's type, its BAR 0 size, INTA routed to the
// ISA IRQ irq.
func (t *Transport) Header(irq uint8) pci.Header {
	return pci.Header{
		VendorID:          PCIVendor,
		DeviceID:          t.deviceID,
		SubsystemVendorID: PCIVendor,
		SubsystemID:       uint16(t.dev.Type()),
		Class:             pciClass(t.dev.Type()),
		InterruptPin:      1,
		InterruptLine:     irq,
		IOBARSize:         [6]uint32{t.barSize},
	}
}

// Stats returns the counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// Err returns the guest error that made the transport report the
// device as needing reset (its own, or the device's), nil if none.
func (t *Transport) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	return t.dev.Err()
}

// interrupt is the virtio.Interrupt the device raises: it sets the ISR
// bit and raises the line. It never takes the transport's lock.
type interrupt struct{ t *Transport }

func (i interrupt) Signal(c virtio.Cause) {
	i.t.isr.Or(uint32(c))
	i.t.raise()
}

func (t *Transport) selected() *virtio.Queue {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

// statusReg returns the status register: the driver's bits, and
// NEEDS_RESET while a guest error stands.
func (t *Transport) statusReg() uint8 {
	s := t.status
	if t.err != nil || t.dev.Err() != nil {
		s |= virtio.StatusNeedsReset
	}
	return s
}

// IORead handles a read of len(p) bytes at offset off of BAR bar. Bytes
// past the registers and the configuration read as 0xff; reading the
// ISR clears it.
func (t *Transport) IORead(bar int, off uint64, p []byte) {
	if bar != 0 {
		for i := range p {
			p[i] = 0xff
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var img [RegConfig]byte
	binary.LittleEndian.PutUint32(img[RegHostFeatures:], uint32(t.dev.Features()))
	binary.LittleEndian.PutUint32(img[RegGuestFeatures:], t.guestFeatures)
	if q := t.selected(); q != nil {
		binary.LittleEndian.PutUint32(img[RegQueuePFN:], q.PFN())
		binary.LittleEndian.PutUint16(img[RegQueueSize:], q.Size())
	}
	binary.LittleEndian.PutUint16(img[RegQueueSelect:], t.queueSel)
	img[RegStatus] = t.statusReg()
	cfgSize := uint64(t.dev.ConfigSize())
	readsISR := false
	for i := range p {
		o := off + uint64(i)
		switch {
		case o < RegConfig:
			p[i] = img[o]
			readsISR = readsISR || o == RegISR
		case o-RegConfig < cfgSize:
			t.dev.ReadConfig(int(o-RegConfig), p[i:i+1])
		default:
			p[i] = 0xff
		}
	}
	if readsISR {
		isr := uint8(t.isr.Swap(0))
		p[RegISR-off] = isr
	}
}

// regWidth returns the width of the writable register at off, 0 if off
// is not one.
func regWidth(off uint64) int {
	switch off {
	case RegGuestFeatures, RegQueuePFN:
		return 4
	case RegQueueSelect, RegQueueNotify:
		return 2
	case RegStatus:
		return 1
	}
	return 0
}

// IOWrite handles a write of p at offset off of BAR bar. Only writes of
// a register's natural size at its offset are meaningful; any other
// write is counted and ignored.
func (t *Transport) IOWrite(bar int, off uint64, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if bar != 0 {
		t.stats.BadAccesses++
		return
	}
	if off >= RegConfig {
		cfgSize := uint64(t.dev.ConfigSize())
		if o := off - RegConfig; o < cfgSize && uint64(len(p)) <= cfgSize-o {
			t.dev.WriteConfig(int(o), p)
			return
		}
		t.stats.BadAccesses++
		return
	}
	if regWidth(off) != len(p) {
		t.stats.BadAccesses++
		return
	}
	var v uint32
	switch len(p) {
	case 1:
		v = uint32(p[0])
	case 2:
		v = uint32(binary.LittleEndian.Uint16(p))
	case 4:
		v = binary.LittleEndian.Uint32(p)
	}
	switch off {
	case RegGuestFeatures:
		t.guestFeatures = v & uint32(t.dev.Features())
	case RegQueuePFN:
		q := t.selected()
		if q == nil || t.active {
			// No such queue, or one the running device is using.
			t.stats.BadAccesses++
			return
		}
		if err := q.SetPFN(v); err != nil && t.err == nil {
			t.err = fmt.Errorf("queue %d: %w", t.queueSel, err)
		}
	case RegQueueSelect:
		t.queueSel = uint16(v)
	case RegQueueNotify:
		if int(v) >= len(t.queues) {
			t.stats.BadAccesses++
			return
		}
		// Legacy drivers may use the device before they set DRIVER_OK
		// (the virtio spec's legacy-interface notes), so a notify starts
		// it with the features negotiated so far.
		if t.activate() {
			t.dev.Notify(int(v))
		}
	case RegStatus:
		if v == 0 {
			t.reset()
			return
		}
		t.status = uint8(v)
		if v&virtio.StatusDriverOK != 0 {
			t.activate()
		}
	}
}

// activate starts the device once, unless a guest error stands; it
// reports whether the device is active.
func (t *Transport) activate() bool {
	if t.active {
		return true
	}
	if t.err != nil {
		return false
	}
	err := t.dev.Activate(virtio.Activation{Features: uint64(t.guestFeatures), Queues: t.queues, Interrupt: interrupt{t}})
	if err != nil {
		t.err = fmt.Errorf("activating the device: %w", err)
		return false
	}
	t.active = true
	return true
}

// reset returns device and transport to their power-on state.
func (t *Transport) reset() {
	t.dev.Reset()
	for _, q := range t.queues {
		q.Reset()
	}
	t.guestFeatures, t.status, t.queueSel = 0, 0, 0
	t.active, t.err = false, nil
	t.isr.Store(0)
}
