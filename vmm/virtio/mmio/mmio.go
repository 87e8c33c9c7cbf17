// Package mmio is the virtio-mmio transport (virtio 1.2 §4.2, register
// layout version 2) of the native VMM, driving any virtio.Device from a
// 4 KiB window of guest physical addresses that no memory backs, so
// every access is an MMIO exit. Linux finds such a device without PCI,
// from the kernel command line (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES):
// Cmdline writes the virtio_mmio.device=SIZE@ADDR:IRQ that announces it.
// ktstr record --transport mmio selects it.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits in front of the tap: the driver's QueueNotify writes
// reach the device through it, and each one on the bulk port's transmit
// queue yields that queue's deliveries. Every value is the guest's:
// control registers take only aligned 32-bit accesses; queue sizes must
// be powers of two within the device's maximum and queue parts aligned
// and inside guest memory; queues change only while the device is
// stopped; status moves only forward through ACKNOWLEDGE, DRIVER,
// FEATURES_OK and DRIVER_OK, and FEATURES_OK only for features the
// device offered, VIRTIO_F_VERSION_1 included. Anything else is counted
// and ignored, or, for a bad queue placement, the device is reported as
// needing reset.
package mmio

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// Register offsets of the version 2 layout.
const (
	RegMagic             = 0x000 // R: "virt"
	RegVersion           = 0x004 // R: 2
	RegDeviceID          = 0x008 // R: the virtio device type
	RegVendorID          = 0x00c // R
	RegDeviceFeatures    = 0x010 // R: 32 feature bits, chosen by DeviceFeaturesSel
	RegDeviceFeaturesSel = 0x014 // W
	RegDriverFeatures    = 0x020 // W: 32 feature bits, chosen by DriverFeaturesSel
	RegDriverFeaturesSel = 0x024 // W
	RegQueueSel          = 0x030 // W
	RegQueueNumMax       = 0x034 // R: 0 for a queue that does not exist
	RegQueueNum          = 0x038 // W
	RegQueueReady        = 0x044 // RW
	RegQueueNotify       = 0x050 // W: the queue index
	RegInterruptStatus   = 0x060 // R
	RegInterruptACK      = 0x064 // W
	RegStatus            = 0x070 // RW; writing 0 resets the device
	RegQueueDescLow      = 0x080 // W
	RegQueueDescHigh     = 0x084 // W
	RegQueueDriverLow    = 0x090 // W: the available ring
	RegQueueDriverHigh   = 0x094 // W
	RegQueueDeviceLow    = 0x0a0 // W: the used ring
	RegQueueDeviceHigh   = 0x0a4 // W
	RegConfigGeneration  = 0x0fc // R
	RegConfig            = 0x100 // device-specific configuration
)

// Identity of the register file.
const (
	Magic    = 0x74726976 // "virt", little-endian
	Version  = 2
	VendorID = 0x5453544b // "KTST", little-endian
	// WindowSize is the size of the device's address window: the
	// registers, then up to 3840 bytes of configuration.
	WindowSize = 0x1000
)

// Cmdline returns the kernel command-line option that announces a
// virtio-mmio device whose window starts at base and whose interrupt is
// the ISA IRQ irq, in the form Linux's virtio_mmio driver parses:
// virtio_mmio.device=4K@0xd0000000:5.
func Cmdline(base uint64, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=%dK@%#x:%d", WindowSize/1024, base, irq)
}

const statusDriverBits = virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK | virtio.StatusFailed

// Stats counts what the transport refused.
type Stats struct {
	BadAccesses int // accesses of the wrong width or offset, or writes that could not apply then
	// BadStatus counts status writes refused: a bit cleared without a
	// reset, a step skipped, FEATURES_OK for features the device did not
	// offer.
	BadStatus int
	// EarlyNotifies counts notifications before DRIVER_OK (the device
	// takes what they announced when it starts).
	EarlyNotifies int
}

// queueRegs are the placement registers of one queue, kept until the
// driver writes QueueReady.
type queueRegs struct {
	num                  uint16
	desc, driver, device uint64
}

// Transport is one virtio-mmio register window driving dev. It is a
// bus.Device; its methods are safe for concurrent use.
type Transport struct {
	mu             sync.Mutex
	dev            virtio.Device
	queues         []*virtio.Queue
	regs           []queueRegs
	raise          func()
	offered        uint64
	deviceFeatSel  uint32
	driverFeatSel  uint32
	driverFeatures uint64
	queueSel       uint32
	status         uint32
	active         bool
	err            error // a guest error of the transport's own (queue placement)
	stats          Stats
	isr            atomic.Uint32
}

// New returns the transport of dev over guest memory mem; raise raises
// its interrupt line (an edge), nil for a driver that polls.
func New(dev virtio.Device, mem *guestmem.Memory, raise func()) (*Transport, error) {
	if dev.ConfigSize() > WindowSize-RegConfig {
		return nil, fmt.Errorf("virtio-mmio: a %d-byte configuration does not fit the %d-byte window", dev.ConfigSize(), WindowSize)
	}
	if raise == nil {
		raise = func() {}
	}
	t := &Transport{dev: dev, raise: raise, offered: dev.Features() | virtio.FVersion1}
	for i, max := range dev.QueueMaxSizes() {
		q, err := virtio.NewQueue(mem, max)
		if err != nil {
			return nil, fmt.Errorf("virtio-mmio: queue %d: %w", i, err)
		}
		t.queues = append(t.queues, q)
		t.regs = append(t.regs, queueRegs{num: max})
	}
	return t, nil
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

// interrupt is the virtio.Interrupt the device raises: it sets the bit
// in InterruptStatus and raises the line. It never takes the
// transport's lock.
type interrupt struct{ t *Transport }

func (i interrupt) Signal(c virtio.Cause) {
	i.t.isr.Or(uint32(c))
	i.t.raise()
}

// selected returns the queue QueueSel names and its registers, nil if
// there is none.
func (t *Transport) selected() (*virtio.Queue, *queueRegs) {
	if uint64(t.queueSel) < uint64(len(t.queues)) {
		return t.queues[t.queueSel], &t.regs[t.queueSel]
	}
	return nil, nil
}

// control reports whether an access of n bytes at off is a control
// register access: 32-bit and aligned, below the configuration.
func control(off uint64, n int) bool { return off < RegConfig && n == 4 && off%4 == 0 }

// configRange returns the part of an access of n bytes at off that
// falls in the device's configuration: its offset there and length.
func (t *Transport) configRange(off uint64, n int) (int, int, bool) {
	if off < RegConfig || n < 1 || n > 8 || off+uint64(n) > WindowSize {
		return 0, 0, false
	}
	o := off - RegConfig
	size := uint64(t.dev.ConfigSize())
	if o >= size {
		return 0, 0, true // inside the window, past the configuration
	}
	return int(o), int(min(uint64(n), size-o)), true
}

// Read handles a guest read of len(p) bytes at offset off of the window.
// Control registers read by anything but an aligned 32-bit access, and
// write-only ones, read as 0; so do bytes past the configuration.
func (t *Transport) Read(off uint64, p []byte) {
	clear(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if off >= RegConfig {
		o, n, ok := t.configRange(off, len(p))
		if !ok {
			t.stats.BadAccesses++
			return
		}
		if n > 0 {
			t.dev.ReadConfig(o, p[:n])
		}
		return
	}
	if !control(off, len(p)) {
		t.stats.BadAccesses++
		return
	}
	var v uint32
	switch off {
	case RegMagic:
		v = Magic
	case RegVersion:
		v = Version
	case RegDeviceID:
		v = t.dev.Type()
	case RegVendorID:
		v = VendorID
	case RegDeviceFeatures:
		if t.deviceFeatSel < 2 {
			v = uint32(t.offered >> (32 * t.deviceFeatSel))
		}
	case RegQueueNumMax:
		if q, _ := t.selected(); q != nil {
			v = uint32(q.MaxSize())
		}
	case RegQueueReady:
		if q, _ := t.selected(); q != nil && q.Ready() {
			v = 1
		}
	case RegInterruptStatus:
		v = t.isr.Load()
	case RegStatus:
		v = t.status
		if t.err != nil || t.dev.Err() != nil {
			v |= virtio.StatusNeedsReset
		}
	case RegConfigGeneration:
		v = 0 // the configuration never changes
	default:
		t.stats.BadAccesses++ // write-only or no register
	}
	binary.LittleEndian.PutUint32(p, v)
}

// Write handles a guest write of p at offset off of the window.
func (t *Transport) Write(off uint64, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if off >= RegConfig {
		o, n, ok := t.configRange(off, len(p))
		if !ok || n < len(p) {
			t.stats.BadAccesses++
			return
		}
		t.dev.WriteConfig(o, p)
		return
	}
	if !control(off, len(p)) {
		t.stats.BadAccesses++
		return
	}
	v := binary.LittleEndian.Uint32(p)
	switch off {
	case RegDeviceFeaturesSel:
		t.deviceFeatSel = v
	case RegDriverFeaturesSel:
		t.driverFeatSel = v
	case RegDriverFeatures:
		// Between DRIVER and FEATURES_OK, and only the two words there are.
		if t.status&virtio.StatusDriver == 0 || t.status&virtio.StatusFeaturesOK != 0 || t.driverFeatSel > 1 {
			t.stats.BadAccesses++
			return
		}
		shift := 32 * t.driverFeatSel
		t.driverFeatures = t.driverFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
	case RegQueueSel:
		t.queueSel = v
	case RegQueueNum:
		q, r := t.settable()
		if q == nil {
			return
		}
		if v == 0 || v > uint32(q.MaxSize()) || v&(v-1) != 0 {
			t.stats.BadAccesses++ // not a power of two within QueueNumMax
			return
		}
		r.num = uint16(v)
	case RegQueueDescLow, RegQueueDescHigh, RegQueueDriverLow, RegQueueDriverHigh, RegQueueDeviceLow, RegQueueDeviceHigh:
		_, r := t.settable()
		if r == nil {
			return
		}
		addr := &r.desc
		switch off &^ 7 {
		case RegQueueDriverLow:
			addr = &r.driver
		case RegQueueDeviceLow:
			addr = &r.device
		}
		if off%8 == 0 {
			*addr = *addr&^0xffffffff | uint64(v)
		} else {
			*addr = *addr&0xffffffff | uint64(v)<<32
		}
	case RegQueueReady:
		t.writeQueueReady(v)
	case RegQueueNotify:
		if uint64(v) >= uint64(len(t.queues)) {
			t.stats.BadAccesses++
			return
		}
		if !t.active {
			t.stats.EarlyNotifies++
			return
		}
		t.dev.Notify(int(v))
	case RegInterruptACK:
		t.isr.And(^v)
	case RegStatus:
		t.writeStatus(v)
	default:
		t.stats.BadAccesses++ // read-only or no register
	}
}

// settable returns the selected queue and its registers if the driver
// may change them now: the queue exists, is not ready, and the device
// is not running. Otherwise it counts a bad access and returns nils.
func (t *Transport) settable() (*virtio.Queue, *queueRegs) {
	q, r := t.selected()
	if q == nil || q.Ready() || t.active {
		t.stats.BadAccesses++
		return nil, nil
	}
	return q, r
}

// writeQueueReady places the selected queue (1) or forgets it (0).
func (t *Transport) writeQueueReady(v uint32) {
	q, r := t.selected()
	if q == nil || v > 1 || t.active {
		t.stats.BadAccesses++
		return
	}
	if v == 0 {
		q.Reset()
		return
	}
	if q.Ready() {
		return
	}
	if err := q.Place(r.num, r.desc, r.driver, r.device); err != nil && t.err == nil {
		t.err = fmt.Errorf("queue %d: %w", t.queueSel, err)
	}
}

// writeStatus moves the status forward: 0 resets; otherwise every bit
// already set stays set and the driver's bits are set in order
// (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK; FAILED at any time).
// FEATURES_OK is refused, and reads back clear, unless the driver took
// only offered features and VIRTIO_F_VERSION_1; DRIVER_OK starts the
// device. NEEDS_RESET, the device's bit, is ignored in what the driver
// writes (a driver that read it writes it back).
func (t *Transport) writeStatus(v uint32) {
	if v == 0 {
		t.reset()
		return
	}
	v &^= virtio.StatusNeedsReset
	if v&^statusDriverBits != 0 || v&t.status != t.status || !inOrder(v) {
		t.stats.BadStatus++
		return
	}
	added := v &^ t.status
	if added&virtio.StatusFeaturesOK != 0 && (t.driverFeatures&^t.offered != 0 || t.driverFeatures&virtio.FVersion1 == 0) {
		t.stats.BadStatus++
		v &^= virtio.StatusFeaturesOK | virtio.StatusDriverOK
		added &^= virtio.StatusFeaturesOK | virtio.StatusDriverOK
	}
	t.status = v
	if added&virtio.StatusDriverOK != 0 && t.err == nil {
		err := t.dev.Activate(virtio.Activation{Features: t.driverFeatures, Queues: t.queues, Interrupt: interrupt{t}})
		if err != nil {
			t.err = fmt.Errorf("activating the device: %w", err)
			return
		}
		t.active = true
	}
}

// inOrder reports whether the driver's bits of v set no step before the
// ones it depends on.
func inOrder(v uint32) bool {
	// The forward order of the status bits a driver sets.
	statusOrder := [...]uint32{virtio.StatusAcknowledge, virtio.StatusDriver, virtio.StatusFeaturesOK, virtio.StatusDriverOK}
	for i := 1; i < len(statusOrder); i++ {
		if v&statusOrder[i] != 0 && v&statusOrder[i-1] == 0 {
			return false
		}
	}
	return true
}

// reset returns device and transport to their power-on state.
func (t *Transport) reset() {
	t.dev.Reset()
	for i, q := range t.queues {
		q.Reset()
		t.regs[i] = queueRegs{num: q.MaxSize()}
	}
	t.deviceFeatSel, t.driverFeatSel, t.driverFeatures = 0, 0, 0
	t.queueSel, t.status = 0, 0
	t.active, t.err = false, nil
	t.isr.Store(0)
}
