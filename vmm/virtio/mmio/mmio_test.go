package mmio

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
	cfg         []byte
	activations []virtio.Activation
	notifies    []int
	resets      int
	activateErr error
	err         error
}

func (d *fakeDevice) Type() uint32                  { return virtio.IDConsole }
func (d *fakeDevice) Features() uint64              { return 0x3 }
func (d *fakeDevice) QueueMaxSizes() []uint16       { return []uint16{16, 8} }
func (d *fakeDevice) ConfigSize() int               { return len(d.cfg) }
func (d *fakeDevice) ReadConfig(off int, p []byte)  { copy(p, d.cfg[off:]) }
func (d *fakeDevice) WriteConfig(off int, p []byte) { copy(d.cfg[off:], p) }
func (d *fakeDevice) Notify(q int)                  { d.notifies = append(d.notifies, q) }
func (d *fakeDevice) Reset()                        { d.resets++ }
func (d *fakeDevice) Err() error                    { return d.err }
func (d *fakeDevice) Activate(a virtio.Activation) error {
	if d.activateErr != nil {
		return d.activateErr
	}
	d.activations = append(d.activations, a)
	return nil
}

// window is a driver's view of the registers.
type window struct{ t *Transport }

func (w window) w32(off uint64, v uint32) { w.t.Write(off, binary.LittleEndian.AppendUint32(nil, v)) }
func (w window) r32(off uint64) uint32 {
	var b [4]byte
	w.t.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func newMem(t *testing.T) *guestmem.Memory {
	m, err := guestmem.New(guestmem.Region{GPA: 0, Data: make([]byte, 1<<20)})
	require.NoError(t, err)
	return m
}

func newFake(t *testing.T) (*fakeDevice, window, *int) {
	d := &fakeDevice{cfg: []byte{1, 2, 3, 4, 5, 6}}
	raised := 0
	tr, err := New(d, newMem(t), func() { raised++ })
	require.NoError(t, err)
	return d, window{tr}, &raised
}

// negotiate takes the device to FEATURES_OK with features.
func (w window) negotiate(features uint64) {
	w.w32(RegStatus, 0)
	w.w32(RegStatus, virtio.StatusAcknowledge)
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
	w.w32(RegDriverFeaturesSel, 0)
	w.w32(RegDriverFeatures, uint32(features))
	w.w32(RegDriverFeaturesSel, 1)
	w.w32(RegDriverFeatures, uint32(features>>32))
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK)
}

// place sets up queue q at desc, with the available ring 0x100 and the
// used ring 0x200 after it, and makes it ready.
func (w window) place(q uint32, num uint32, desc uint64) {
	w.w32(RegQueueSel, q)
	w.w32(RegQueueNum, num)
	for _, r := range []struct {
		low  uint64
		addr uint64
	}{{RegQueueDescLow, desc}, {RegQueueDriverLow, desc + 0x100}, {RegQueueDeviceLow, desc + 0x200}} {
		w.w32(r.low, uint32(r.addr))
		w.w32(r.low+4, uint32(r.addr>>32))
	}
	w.w32(RegQueueReady, 1)
}

const features = virtio.FVersion1 | 2

func TestIdentity(t *testing.T) {
	_, w, _ := newFake(t)
	assert.Equal(t, uint32(Magic), w.r32(RegMagic))
	assert.Equal(t, uint32(2), w.r32(RegVersion))
	assert.Equal(t, uint32(virtio.IDConsole), w.r32(RegDeviceID))
	assert.Equal(t, uint32(VendorID), w.r32(RegVendorID))
	assert.Equal(t, uint32(3), w.r32(RegDeviceFeatures), "word 0: the device's features")
	w.w32(RegDeviceFeaturesSel, 1)
	assert.Equal(t, uint32(1), w.r32(RegDeviceFeatures), "word 1: VIRTIO_F_VERSION_1, the transport's")
	w.w32(RegDeviceFeaturesSel, 2)
	assert.Zero(t, w.r32(RegDeviceFeatures), "there is no word 2")
	w.w32(RegQueueSel, 1)
	assert.Equal(t, uint32(8), w.r32(RegQueueNumMax))
	w.w32(RegQueueSel, 2)
	assert.Zero(t, w.r32(RegQueueNumMax), "a queue that does not exist")
	assert.Equal(t, "virtio_mmio.device=4K@0xd0000000:5", Cmdline(0xd0000000, 5))
}

// TestAccessWidths: control registers take aligned 32-bit accesses only;
// the configuration any width up to 8 inside it.
func TestAccessWidths(t *testing.T) {
	d, w, _ := newFake(t)
	tests := []struct {
		name  string
		off   uint64
		n     int
		write bool
		bad   bool
		want  []byte
	}{
		{"magic, 32-bit", RegMagic, 4, false, false, []byte("virt")},
		{"magic, 16-bit", RegMagic, 2, false, true, []byte{0, 0}},
		{"magic, 8-bit", RegMagic + 1, 1, false, true, []byte{0}},
		{"unaligned", RegVersion + 2, 4, false, true, []byte{0, 0, 0, 0}},
		{"64-bit control read", RegMagic, 8, false, true, make([]byte, 8)},
		{"write-only register read", RegQueueNotify, 4, false, true, []byte{0, 0, 0, 0}},
		{"a hole", 0x0f0, 4, false, true, []byte{0, 0, 0, 0}},
		{"read-only register written", RegMagic, 4, true, true, nil},
		{"16-bit status write", RegStatus, 2, true, true, nil},
		{"configuration, 8-bit", RegConfig + 1, 1, false, false, []byte{2}},
		{"configuration, 16-bit", RegConfig + 2, 2, false, false, []byte{3, 4}},
		{"configuration, 64-bit running past it", RegConfig, 8, false, false, []byte{1, 2, 3, 4, 5, 6, 0, 0}},
		{"past the configuration", RegConfig + 0x40, 4, false, false, []byte{0, 0, 0, 0}},
		{"past the window", WindowSize - 2, 4, false, true, []byte{0, 0, 0, 0}},
		{"configuration write running past it", RegConfig + 4, 4, true, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := w.t.Stats().BadAccesses
			p := make([]byte, tt.n)
			for i := range p {
				p[i] = 0xee
			}
			if tt.write {
				w.t.Write(tt.off, p)
			} else {
				w.t.Read(tt.off, p)
				assert.Equal(t, tt.want, p)
			}
			bad := w.t.Stats().BadAccesses - before
			if tt.bad {
				assert.Equal(t, 1, bad, "counted")
			} else {
				assert.Zero(t, bad, "a good access")
			}
		})
	}
	w.t.Write(RegConfig+4, []byte{9, 9})
	assert.Equal(t, []byte{1, 2, 3, 4, 9, 9}, d.cfg, "a configuration write inside it reaches the device")
	assert.Empty(t, d.activations)
}

// TestStatusTransitions: the status only moves forward, one step after
// another; anything else is refused and leaves it as it was.
func TestStatusTransitions(t *testing.T) {
	const ack, drv, fok, dok, failed = virtio.StatusAcknowledge, virtio.StatusDriver, virtio.StatusFeaturesOK, virtio.StatusDriverOK, virtio.StatusFailed
	tests := []struct {
		name     string
		writes   []uint32
		features uint64 // written at DRIVER
		want     uint32
		refused  int
		active   bool
	}{
		{"the Linux sequence", []uint32{ack, ack | drv, ack | drv | fok, ack | drv | fok | dok}, features, ack | drv | fok | dok, 0, true},
		{"several steps in one write", []uint32{ack | drv, ack | drv | fok | dok}, features, ack | drv | fok | dok, 0, true},
		{"skip ACKNOWLEDGE", []uint32{drv}, 0, 0, 1, false},
		{"skip FEATURES_OK", []uint32{ack, ack | drv, ack | drv | dok}, features, ack | drv, 1, false},
		{"clear a bit without reset", []uint32{ack, ack | drv, ack}, 0, ack | drv, 1, false},
		{"an unknown bit", []uint32{ack | 0x10}, 0, 0, 1, false},
		{"FAILED at any time", []uint32{ack, ack | failed}, 0, ack | failed, 0, false},
		{"NEEDS_RESET written back is ignored", []uint32{ack, ack | drv | virtio.StatusNeedsReset}, 0, ack | drv, 0, false},
		{"FEATURES_OK without VERSION_1", []uint32{ack, ack | drv, ack | drv | fok}, 2, ack | drv, 1, false},
		{"FEATURES_OK with a feature not offered", []uint32{ack, ack | drv, ack | drv | fok}, features | 4, ack | drv, 1, false},
		{"DRIVER_OK with FEATURES_OK refused in the same write", []uint32{ack | drv, ack | drv | fok | dok}, 2, ack | drv, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, w, _ := newFake(t)
			for _, v := range tt.writes {
				w.w32(RegStatus, v)
				if v&drv != 0 && w.r32(RegStatus)&drv != 0 && tt.features != 0 {
					w.w32(RegDriverFeaturesSel, 0)
					w.w32(RegDriverFeatures, uint32(tt.features))
					w.w32(RegDriverFeaturesSel, 1)
					w.w32(RegDriverFeatures, uint32(tt.features>>32))
				}
			}
			assert.Equal(t, tt.want, w.r32(RegStatus))
			assert.Equal(t, tt.refused, w.t.Stats().BadStatus)
			if tt.active {
				require.Len(t, d.activations, 1)
				assert.Equal(t, uint64(features), d.activations[0].Features)
			} else {
				assert.Empty(t, d.activations)
			}
		})
	}
}

func TestFeaturesOnlyBeforeFeaturesOK(t *testing.T) {
	_, w, _ := newFake(t)
	w.w32(RegDriverFeatures, 2)
	assert.Equal(t, 1, w.t.Stats().BadAccesses, "before DRIVER")
	w.negotiate(features)
	require.NotZero(t, w.r32(RegStatus)&virtio.StatusFeaturesOK)
	w.w32(RegDriverFeatures, 0)
	assert.Equal(t, 2, w.t.Stats().BadAccesses, "after FEATURES_OK")
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver)
	w.w32(RegDriverFeaturesSel, 2)
	assert.Equal(t, 1, w.t.Stats().BadStatus, "clearing FEATURES_OK is refused")
}

// TestQueueSetup: sizes, placement and readiness, checked as the spec
// and guest memory require.
func TestQueueSetup(t *testing.T) {
	tests := []struct {
		name      string
		num       uint32
		desc      uint64
		ready     bool
		badAccess int
		brokenErr bool
	}{
		{"well placed, full size", 16, 0x1000, true, 0, false},
		{"smaller", 4, 0x1000, true, 0, false},
		{"size 0 keeps the maximum", 0, 0x1000, true, 1, false},
		{"size not a power of two keeps the maximum", 12, 0x1000, true, 1, false},
		{"size over QueueNumMax keeps the maximum", 32, 0x1000, true, 1, false},
		{"misaligned descriptor table", 16, 0x1008, false, 0, true},
		{"outside guest memory", 16, 1 << 40, false, 0, true},
		{"running off the end of memory", 16, 1<<20 - 0x100, false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, w, _ := newFake(t)
			w.negotiate(features)
			w.place(0, tt.num, tt.desc)
			assert.Equal(t, tt.ready, w.r32(RegQueueReady) == 1)
			assert.Equal(t, tt.badAccess, w.t.Stats().BadAccesses)
			if tt.brokenErr {
				assert.ErrorIs(t, w.t.Err(), virtio.ErrBadRing)
				assert.NotZero(t, w.r32(RegStatus)&virtio.StatusNeedsReset)
			} else {
				assert.NoError(t, w.t.Err())
				want := uint16(tt.num)
				if tt.badAccess > 0 {
					want = 16
				}
				assert.Equal(t, want, w.t.queues[0].Size())
			}
		})
	}
}

// TestQueuesFixedWhileRunning: a queue is ready or placed only while the
// device is stopped; a reset frees them again.
func TestQueuesFixedWhileRunning(t *testing.T) {
	d, w, raised := newFake(t)
	w.negotiate(features)
	w.place(0, 16, 0x1000)
	w.w32(RegQueueNotify, 0)
	assert.Equal(t, 1, w.t.Stats().EarlyNotifies, "a notify before DRIVER_OK waits for the activation")
	assert.Empty(t, d.notifies)
	w.w32(RegQueueSel, 0)
	w.w32(RegQueueDescLow, 0x5000)
	assert.Equal(t, 1, w.t.Stats().BadAccesses, "a ready queue is not moved")
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	require.Len(t, d.activations, 1)
	a := d.activations[0]
	require.Len(t, a.Queues, 2)
	assert.True(t, a.Queues[0].Ready())
	assert.False(t, a.Queues[1].Ready())

	bad := w.t.Stats().BadAccesses
	w.place(1, 8, 0x3000)
	assert.False(t, a.Queues[1].Ready(), "no queue is placed under a running device")
	assert.Equal(t, bad+8, w.t.Stats().BadAccesses, "QueueNum, six address words, QueueReady")
	w.w32(RegQueueSel, 0)
	w.w32(RegQueueReady, 0)
	assert.True(t, a.Queues[0].Ready(), "nor taken away")
	assert.Equal(t, bad+9, w.t.Stats().BadAccesses)

	w.w32(RegQueueNotify, 1)
	w.w32(RegQueueNotify, 7)
	assert.Equal(t, []int{1}, d.notifies, "a queue that does not exist is not notified")
	assert.Equal(t, bad+10, w.t.Stats().BadAccesses)

	a.Interrupt.Signal(virtio.CauseUsedBuffer)
	a.Interrupt.Signal(virtio.CauseConfigChange)
	assert.Equal(t, 2, *raised)
	assert.Equal(t, uint32(3), w.r32(RegInterruptStatus))
	w.w32(RegInterruptACK, 1)
	assert.Equal(t, uint32(2), w.r32(RegInterruptStatus), "ACK clears the bits written")

	resets := d.resets
	w.w32(RegStatus, 0)
	assert.Equal(t, resets+1, d.resets)
	assert.Zero(t, w.r32(RegStatus))
	assert.Zero(t, w.r32(RegInterruptStatus))
	assert.False(t, a.Queues[0].Ready())
	w.negotiate(features)
	w.place(1, 8, 0x3000)
	assert.True(t, a.Queues[1].Ready(), "after reset the queues are the driver's again")
	w.w32(RegQueueReady, 0)
	assert.False(t, a.Queues[1].Ready(), "QueueReady 0 forgets a queue of a stopped device")
	w.w32(RegQueueReady, 2)
	assert.Equal(t, bad+11, w.t.Stats().BadAccesses, "QueueReady takes 0 or 1")
}

func TestActivationFailure(t *testing.T) {
	d, w, _ := newFake(t)
	d.activateErr = errors.New("cannot run")
	w.negotiate(features)
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	assert.ErrorContains(t, w.t.Err(), "cannot run")
	assert.NotZero(t, w.r32(RegStatus)&virtio.StatusNeedsReset)
	w.w32(RegQueueNotify, 0)
	assert.Empty(t, d.notifies, "a device that did not start gets no notify")

	d.activateErr = nil
	w.w32(RegStatus, 0)
	assert.NoError(t, w.t.Err(), "reset clears it")
	w.negotiate(features)
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	assert.Len(t, d.activations, 1)
	d.err = errors.New("the device broke")
	assert.NotZero(t, w.r32(RegStatus)&virtio.StatusNeedsReset, "the device's own error")
}

// TestConsoleOverMMIO drives the real console through the registers the
// way the test guest does, up to one bulk delivery.
func TestConsoleOverMMIO(t *testing.T) {
	mem := newMem(t)
	c, err := virtio.NewConsole(virtio.ConsoleConfig{QueueSize: 16})
	require.NoError(t, err)
	tr, err := New(c, mem, nil)
	require.NoError(t, err)
	w := window{tr}
	w.negotiate(virtio.FVersion1 | virtio.ConsoleFMultiport)
	require.NotZero(t, w.r32(RegStatus)&virtio.StatusFeaturesOK)
	assert.Equal(t, uint32(virtio.NumPorts), w.r32(RegConfig+4), "max_nr_ports")
	const bulkTX, desc = 5, 0x4000
	w.place(bulkTX, 4, desc)
	w.w32(RegStatus, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)

	require.NoError(t, mem.Write(0x8000, []byte("frame")))
	require.NoError(t, mem.PutUint64(desc, 0x8000))
	require.NoError(t, mem.PutUint32(desc+8, 5))
	avail := uint64(desc + 0x100)
	require.NoError(t, mem.PutUint16(avail+4, 0))
	require.NoError(t, mem.PutUint16(avail+2, 1))
	w.w32(RegQueueNotify, bulkTX)
	d, err := c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "frame", string(d.Data))
	idx, err := mem.Uint16(desc + 0x200 + 2)
	require.NoError(t, err)
	assert.Equal(t, uint16(1), idx, "the chain came back on the used ring")
	assert.NotZero(t, w.r32(RegInterruptStatus)&uint32(virtio.CauseUsedBuffer))
	assert.NoError(t, tr.Err())
	assert.Zero(t, tr.Stats().BadAccesses)
}
