package legacypci

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// fakeDevice records what the transport asks of it.
type fakeDevice struct {
	features    uint64
	queues      []uint16
	cfg         []byte
	activations []virtio.Activation
	notifies    []int
	resets      int
	activateErr error
	err         error
}

func (d *fakeDevice) Type() uint32                  { return virtio.IDConsole }
func (d *fakeDevice) Features() uint64              { return d.features }
func (d *fakeDevice) QueueMaxSizes() []uint16       { return d.queues }
func (d *fakeDevice) ConfigSize() int               { return len(d.cfg) }
func (d *fakeDevice) ReadConfig(off int, p []byte)  { copy(p, d.cfg[off:]) }
func (d *fakeDevice) WriteConfig(off int, p []byte) { copy(d.cfg[off:], p) }
func (d *fakeDevice) Notify(q int)                  { d.notifies = append(d.notifies, q) }
func (d *fakeDevice) Reset()                        { d.resets++; d.err = nil }
func (d *fakeDevice) Err() error                    { return d.err }
func (d *fakeDevice) Activate(a virtio.Activation) error {
	if d.activateErr != nil {
		return d.activateErr
	}
	d.activations = append(d.activations, a)
	return nil
}

// port is a driver's view of the BAR.
type port struct{ t *Transport }

func (p port) w8(off uint64, v uint8) { p.t.IOWrite(0, off, []byte{v}) }
func (p port) w16(off uint64, v uint16) {
	p.t.IOWrite(0, off, binary.LittleEndian.AppendUint16(nil, v))
}
func (p port) w32(off uint64, v uint32) {
	p.t.IOWrite(0, off, binary.LittleEndian.AppendUint32(nil, v))
}
func (p port) r8(off uint64) uint8 {
	var b [1]byte
	p.t.IORead(0, off, b[:])
	return b[0]
}
func (p port) r16(off uint64) uint16 {
	var b [2]byte
	p.t.IORead(0, off, b[:])
	return binary.LittleEndian.Uint16(b[:])
}
func (p port) r32(off uint64) uint32 {
	var b [4]byte
	p.t.IORead(0, off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func newMem(t *testing.T) *guestmem.Memory {
	m, err := guestmem.New(guestmem.Region{GPA: 0, Data: make([]byte, 1<<20)})
	require.NoError(t, err)
	return m
}

func newFake(t *testing.T) (*fakeDevice, port, *int) {
	d := &fakeDevice{features: 0x1_0000_0003, queues: []uint16{16, 8}, cfg: []byte{1, 2, 3, 4}}
	raised := 0
	tr, err := New(d, newMem(t), func() { raised++ })
	require.NoError(t, err)
	return d, port{tr}, &raised
}

func TestRegisters(t *testing.T) {
	d, p, _ := newFake(t)
	assert.Equal(t, uint32(3), p.r32(RegHostFeatures), "the low 32 feature bits: legacy has no more")
	p.w32(RegGuestFeatures, 0xffffffff)
	assert.Equal(t, uint32(3), p.r32(RegGuestFeatures), "only offered features stick")
	p.w16(RegQueueSelect, 1)
	assert.Equal(t, uint16(8), p.r16(RegQueueSize))
	p.w16(RegQueueSelect, 2)
	assert.Equal(t, uint16(0), p.r16(RegQueueSize), "a queue that does not exist has size 0")
	p.w32(RegQueuePFN, 0x10)
	assert.Equal(t, 1, p.t.Stats().BadAccesses, "placing a queue that does not exist")
	p.w8(RegQueuePFN, 1)
	assert.Equal(t, 2, p.t.Stats().BadAccesses, "a write of the wrong width")
	p.w16(RegStatus, 1)
	assert.Equal(t, 3, p.t.Stats().BadAccesses, "a status write of the wrong width")
	p.t.IOWrite(1, 0, []byte{0})
	assert.Equal(t, 4, p.t.Stats().BadAccesses, "a BAR that does not exist")

	assert.Equal(t, uint32(0x04030201), p.r32(RegConfig), "the device's configuration after the header")
	p.w16(RegConfig+2, 0x0909)
	assert.Equal(t, []byte{1, 2, 9, 9}, d.cfg, "configuration writes reach the device")
	p.w32(RegConfig+2, 0)
	assert.Equal(t, 5, p.t.Stats().BadAccesses, "a configuration write running past it")
	var past [4]byte
	p.t.IORead(0, MinBARSize-2, past[:])
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, past[:], "bytes past the registers")
	p.t.IORead(1, 0, past[:])
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, past[:], "another BAR")
	assert.Empty(t, d.activations, "nothing started the device")
}

// TestActivation: DRIVER_OK starts the device once, with the features
// negotiated and every queue; a reset stops it.
func TestActivation(t *testing.T) {
	d, p, raised := newFake(t)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
	p.w32(RegGuestFeatures, 2)
	p.w16(RegQueueSelect, 0)
	p.w32(RegQueuePFN, 0x10)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusDriverOK)
	require.Len(t, d.activations, 1)
	a := d.activations[0]
	assert.Equal(t, uint64(2), a.Features)
	require.Len(t, a.Queues, 2)
	assert.True(t, a.Queues[0].Ready())
	assert.False(t, a.Queues[1].Ready(), "a queue the driver did not place")
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusDriverOK)
	assert.Len(t, d.activations, 1, "once")

	p.w16(RegQueueSelect, 1)
	p.w32(RegQueuePFN, 0x20)
	assert.False(t, a.Queues[1].Ready(), "no queue moves under a running device")
	assert.Equal(t, 1, p.t.Stats().BadAccesses)

	p.w16(RegQueueNotify, 1)
	p.w16(RegQueueNotify, 2)
	assert.Equal(t, []int{1}, d.notifies, "a queue that does not exist is not notified")

	a.Interrupt.Signal(virtio.CauseUsedBuffer)
	assert.Equal(t, 1, *raised)
	assert.Equal(t, uint8(virtio.CauseUsedBuffer), p.r8(RegISR))
	assert.Equal(t, uint8(0), p.r8(RegISR), "reading the ISR cleared it")

	p.w8(RegStatus, 0)
	assert.Equal(t, 1, d.resets)
	assert.False(t, a.Queues[0].Ready(), "reset forgets the queues")
	assert.Zero(t, p.r32(RegGuestFeatures))
	p.w16(RegQueueSelect, 1)
	p.w32(RegQueuePFN, 0x20)
	assert.True(t, a.Queues[1].Ready(), "a reset device's queues can be placed again")
}

// TestEarlyNotify: a legacy driver may notify before DRIVER_OK; the
// notify starts the device, as the console did before it had a
// transport of its own.
func TestEarlyNotify(t *testing.T) {
	d, p, _ := newFake(t)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
	p.w32(RegGuestFeatures, 1)
	p.w16(RegQueueNotify, 0)
	require.Len(t, d.activations, 1)
	assert.Equal(t, uint64(1), d.activations[0].Features)
	assert.Equal(t, []int{0}, d.notifies)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusDriverOK)
	assert.Len(t, d.activations, 1, "DRIVER_OK after that starts nothing new")
}

func TestNeedsReset(t *testing.T) {
	d, p, _ := newFake(t)
	p.w16(RegQueueSelect, 0)
	p.w32(RegQueuePFN, 0xfffff)
	assert.ErrorIs(t, p.t.Err(), virtio.ErrBadRing, "a queue outside guest memory")
	assert.NotZero(t, p.r8(RegStatus)&virtio.StatusNeedsReset)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusDriverOK)
	assert.Empty(t, d.activations, "a broken transport starts nothing")
	p.w8(RegStatus, 0)
	assert.NoError(t, p.t.Err(), "reset clears the error")
	p.w32(RegQueuePFN, 0x10)
	assert.NoError(t, p.t.Err(), "a queue inside memory")
	assert.Equal(t, uint32(0x10), p.r32(RegQueuePFN))
	assert.Zero(t, p.r8(RegStatus)&virtio.StatusNeedsReset)

	d.err = errors.New("the device broke")
	assert.NotZero(t, p.r8(RegStatus)&virtio.StatusNeedsReset, "the device's own error")
	assert.ErrorContains(t, p.t.Err(), "the device broke")

	p.w8(RegStatus, 0)
	d.activateErr = errors.New("cannot run")
	p.w8(RegStatus, virtio.StatusDriverOK)
	assert.ErrorContains(t, p.t.Err(), "cannot run")
	assert.NotZero(t, p.r8(RegStatus)&virtio.StatusNeedsReset, "a device that would not start")
}

func TestHeader(t *testing.T) {
	c, err := virtio.NewConsole(virtio.ConsoleConfig{})
	require.NoError(t, err)
	tr, err := New(c, newMem(t), nil)
	require.NoError(t, err)
	h := tr.Header(5)
	assert.Equal(t, uint16(0x1af4), h.VendorID)
	assert.Equal(t, uint16(0x1003), h.DeviceID, "the transitional console")
	assert.Equal(t, uint16(virtio.IDConsole), h.SubsystemID)
	assert.Equal(t, uint32(0x078000), h.Class)
	assert.Equal(t, uint8(5), h.InterruptLine)
	assert.Equal(t, uint32(MinBARSize), h.IOBARSize[0], "20 header bytes and 12 of configuration fit 64")

	big := &fakeDevice{cfg: make([]byte, 100)}
	tr, err = New(big, newMem(t), nil)
	require.NoError(t, err)
	assert.Equal(t, uint32(128), tr.Header(5).IOBARSize[0], "rounded up to a power of two")

	_, err = New(&otherType{fakeDevice: big}, newMem(t), nil)
	assert.ErrorContains(t, err, "use the virtio-mmio transport")
}

type otherType struct{ *fakeDevice }

func (otherType) Type() uint32 { return 42 }

// TestConsoleOverLegacyPCI drives the real console through the
// registers the way the test guest does, up to one bulk delivery.
func TestConsoleOverLegacyPCI(t *testing.T) {
	mem := newMem(t)
	c, err := virtio.NewConsole(virtio.ConsoleConfig{QueueSize: 16})
	require.NoError(t, err)
	tr, err := New(c, mem, nil)
	require.NoError(t, err)
	p := port{tr}
	p.w8(RegStatus, 0)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
	p.w32(RegGuestFeatures, virtio.ConsoleFMultiport)
	const bulkTX, pfn = 5, 0x10
	p.w16(RegQueueSelect, bulkTX)
	require.Equal(t, uint16(16), p.r16(RegQueueSize))
	p.w32(RegQueuePFN, pfn)
	p.w8(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusDriverOK)

	// One descriptor, offered, notified. The bulk port is not open, but
	// its transmit queue is tapped all the same.
	base := uint64(pfn) * virtio.LegacyAlign
	require.NoError(t, mem.Write(0x8000, []byte("frame")))
	require.NoError(t, mem.PutUint64(base, 0x8000))
	require.NoError(t, mem.PutUint32(base+8, 5))
	avail := base + 16*16
	require.NoError(t, mem.PutUint16(avail+4, 0))
	require.NoError(t, mem.PutUint16(avail+2, 1))
	p.w16(RegQueueNotify, bulkTX)
	d, err := c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "frame", string(d.Data))
	used := base + virtio.LegacyAlign
	idx, err := mem.Uint16(used + 2)
	require.NoError(t, err)
	assert.Equal(t, uint16(1), idx, "the chain came back")
	assert.NoError(t, tr.Err())
}
