package virtio

import "encoding/binary"

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

// Device status bits.
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusNeedsReset  = 64
	StatusFailed      = 128
)

// ISR bits.
const (
	ISRQueue  = 1 // a queue has used buffers
	ISRConfig = 2 // the configuration changed
)

// PCI identity of legacy (transitional) virtio devices.
const (
	PCIVendor          = 0x1af4
	PCIDeviceConsole   = 0x1003 // transitional console
	VirtioIDConsole    = 3      // subsystem device ID of a console
	PCIClassSimpleComm = 0x078000
)

// LegacyBARSize is the size of the legacy I/O BAR: the 20-byte common
// header and the device configuration, rounded up to a power of two.
const LegacyBARSize = 64

// transport holds the legacy virtio-pci register state common to all
// devices. Its owner serialises access.
type transport struct {
	hostFeatures  uint32
	guestFeatures uint32
	status        uint8
	isr           uint8
	queueSel      uint16
	queues        []*Queue
	bad           int // register accesses that matched no register
}

// registerImage returns the register file as the driver sees it, config
// excluded.
func (t *transport) registerImage() [RegConfig]byte {
	var b [RegConfig]byte
	binary.LittleEndian.PutUint32(b[RegHostFeatures:], t.hostFeatures)
	binary.LittleEndian.PutUint32(b[RegGuestFeatures:], t.guestFeatures)
	if q := t.selected(); q != nil {
		binary.LittleEndian.PutUint32(b[RegQueuePFN:], q.PFN())
		binary.LittleEndian.PutUint16(b[RegQueueSize:], q.Size())
	}
	binary.LittleEndian.PutUint16(b[RegQueueSelect:], t.queueSel)
	b[RegStatus] = t.status
	b[RegISR] = t.isr
	return b
}

func (t *transport) selected() *Queue {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

// regWrite is a decoded write to the common header.
type regWrite struct {
	reg   int
	value uint32
}

// decodeWrite turns a write of p at off into a register write. Only
// writes of a register's natural size at its offset are meaningful; any
// other write is counted and ignored.
func (t *transport) decodeWrite(off uint64, p []byte) (regWrite, bool) {
	var v uint32
	switch len(p) {
	case 1:
		v = uint32(p[0])
	case 2:
		v = uint32(binary.LittleEndian.Uint16(p))
	case 4:
		v = binary.LittleEndian.Uint32(p)
	default:
		t.bad++
		return regWrite{}, false
	}
	if regWidth(off) != len(p) {
		t.bad++
		return regWrite{}, false
	}
	return regWrite{reg: int(off), value: v}, true
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
